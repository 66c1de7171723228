"""Checks that a deployed app answers as a healthy release does: each takes its client and
returns a result record; whether a failure stops the release is a gate's decision.

- http.py: /health and the smoke checks, spoken as Shopify's browsers and webhooks speak
- supabase.py: the app's Supabase project answers with the configured anon key
- tls.py: the one TLS context every HTTP client of the library shares
"""
