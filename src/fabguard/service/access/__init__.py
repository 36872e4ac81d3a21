"""People and their tokens: who may act, and whether two acts are two people's."""
