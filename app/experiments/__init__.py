"""Datasets and experiments: run every item of a dataset on one configuration,
score it, and compare two experiments item by item."""
