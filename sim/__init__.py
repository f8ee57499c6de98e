"""Simulated Asterisk (AMI server, FastAGI client, dialplan) and models of the people around it."""
