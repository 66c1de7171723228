"""What a person or a rule decides in a release.

- readiness.py: the workstreams' readiness (runbooks/readiness.csv) for the pre-deployment checklist
- attest.py: attestations of manual checks and the go/no-go decision, who and when
- gonogo.py: the plan's go/no-go criteria measured from sections 1-4, and the decision
- release_gate.py: whether this release's records allow production to change (read by the deploy itself)
"""
