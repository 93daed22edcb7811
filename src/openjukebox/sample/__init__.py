"""Generation: window plans (`windows`), settings (`settings`), the four-verb pipeline over the VQ-VAE and the
priors (`pipeline`), resumable run folders (`run`) and the `openjukebox sample` command (`cli`).

Nothing is imported here, so that the command line can read the settings without importing torch.
"""
