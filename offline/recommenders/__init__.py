"""The models: VECF with its repeat boost and new-item slots, and the baselines, each a `Recommender`."""
