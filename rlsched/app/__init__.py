"""rlsched.app: experiments (``run``, ``resume``, ``replay``), configs, comparisons, the
user-loop scheduler and the command line: the layer that names tasks and agents."""
