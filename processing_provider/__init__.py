"""Processing provider and algorithms of SlideWatch (thin wrappers around slidewatch.core)."""
