"""rlsched.integrations: the learned controller inside other libraries' trainers.

- :mod:`rlsched.integrations.lightning`: ``AdaptiveSchedulerCallback``, a Lightning ``Callback``
  (``pip install "rlsched[lightning]"``).
- :mod:`rlsched.integrations.transformers`: ``AdaptiveSchedulerCallback``, a Hugging Face
  ``TrainerCallback`` (``pip install "rlsched[transformers]"``).

Both wrap :class:`rlsched.AdaptiveScheduler`: every optimizer step feeds it the training loss, every
validation its loss, and the controller's LR goes into the trainer's optimizer. Importing this
package imports neither framework; each module imports only its own.
"""
