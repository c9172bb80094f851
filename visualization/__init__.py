"""Feature visualization: the activation-maximization engine and its two scripts."""
