"""rlsched.report: what a person sees of a run: TensorBoard and figures."""
