"""Envelope encryption of fields: providers (KEKs), keyring (data keys), field type, rotation.

See docs/security-model.md, "Keys and encryption", for the key hierarchy.
"""
