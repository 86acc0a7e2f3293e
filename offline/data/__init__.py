"""Data in: the internal dataset format, the synthetic and planted shops, real-data preparation, time splits."""
