"""Linting Concourse pipelines and task configs."""
