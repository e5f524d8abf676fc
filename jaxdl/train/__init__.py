"""Training: the TrainState, the pure steps and their parallel wrappers, and the fit() loop."""
