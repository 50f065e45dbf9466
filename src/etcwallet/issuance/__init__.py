"""ETC issuance at outlets: vehicles, user cards, OBU tags, activation, detection and account services."""
