"""The mmbot engine: events, order book, event loop, order manager, portfolio, settings, CLI."""
