"""consortium_api.v1: generated from types.proto and ledger.proto by `make proto`; do not edit."""
