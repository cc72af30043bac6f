"""The web pages of the proxy's keys and provider endpoints (the objects themselves live in proxy/)."""
