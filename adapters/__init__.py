"""Everything that talks to the outside world: feeds, execution, the simulated venue and market."""
