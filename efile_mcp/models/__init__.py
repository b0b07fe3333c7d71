"""Data shapes: `wire` (the efile API, camelCase) and `results` (tool outputs, snake_case)."""
