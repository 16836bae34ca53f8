"""The VAE models of the experiment binaries: Bernoulli (one to four
stochastic layers) and categorical, and their shared networks."""
