"""Consent, privacy policy and obligations: pure decisions and the audit records they produce."""
