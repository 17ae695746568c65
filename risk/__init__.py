"""The pre-trade risk gate. Pure: no I/O, no clock, no logging; time comes in with the inputs."""
