"""What every layer validates with: the vocabulary a spec accepts (norms, strategies,
target modes, precisions; torch-free) and the one formatter that turns a pydantic
validation error into a :class:`~sweep.errors.SpecError` naming the field and value."""
