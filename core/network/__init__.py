"""The pair network: candidate pairs, previews, the pair-quality model, selection
strategies, and pairs.csv (its one reader and writer)."""
