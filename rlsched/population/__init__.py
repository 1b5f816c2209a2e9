"""rlsched.population: the population runtime: the runner loop, its observers, the run
directory and its lineage, and the communication between ``torchrun`` ranks."""
