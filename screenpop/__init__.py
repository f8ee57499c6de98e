"""Screen pops: the customer store and pop composition."""
