"""The resource type: check, in and out as Concourse runs them."""
