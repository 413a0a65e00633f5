"""Small pieces shared by several test modules (importable as `testkit`: pytest's pythonpath includes tests/)."""
