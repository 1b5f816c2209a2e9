"""rlsched.train: the supervised training engine: ``SupervisedJob``, the dynamic batch sampler,
the gradient probe and its statistics, and one LR setter."""
