"""The two-tower model: towers, LightningModule and DataModule."""
