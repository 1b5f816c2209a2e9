"""rlsched.core: the contracts every part shares, and the pure functions of them.

Hyperparameters and their space, the training-job contract, members and their records, the
agent and explorer protocols, observation features, the action encoding and the reward.
Nothing here imports another layer of rlsched.
"""
