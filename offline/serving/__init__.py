"""What ships: the SavedModel export, two-stage retrieval tables, batch recommendations from an export."""
