"""rlsched.agents: everything that decides hyperparameters (schedules, search, PBT, controllers)."""
