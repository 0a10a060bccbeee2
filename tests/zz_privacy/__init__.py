"""The personal-data scan after every other suite (issue 11 §9, PRIV-1); ``zz_`` so that
pytest collects it last and it sees what the other modules left."""
