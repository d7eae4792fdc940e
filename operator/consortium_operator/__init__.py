"""consortium_operator: the Kopf operator that reconciles `Consortium` resources into node pods."""
