"""The sweep spec: what a YAML file may say (declared once, as pydantic models), how a
mistake in it is reported, and the names the spec shares with the attack kernels."""
