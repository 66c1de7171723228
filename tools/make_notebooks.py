"""Write runbooks/*.ipynb: one notebook per plan section, committed without outputs.

The notebooks are generated so that every runbook has the same shape: a title that quotes
the plan, a typed and commented parameters cell (what `papermill --help-notebook` shows),
the line that opens the section, then one markdown cell saying what and why before each
one-line step, and the gate last. tests/test_runbooks.py pins the parameters and shape.

    .venv/bin/python tools/make_notebooks.py

Cell ids are derived from the notebook's name and the cell's place, so regenerating an
unchanged plan changes nothing in git.
"""

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from hotdash_release.targets.standin_app import DEFECTS as STANDIN_DEFECTS  # documented as the app knows them

OUT = Path(__file__).resolve().parents[1] / "runbooks"

COMMON = [
    (
        'target: str = ""',
        "deployment target: local (rehearsal on this machine) | fly; empty: the configuration's default",
    ),
    (
        'config_path: str = ""',
        "release configuration; relative paths start in runbooks/; empty: $HOTDASH_CONFIG or runbooks/hotdash.toml",
    ),
    (
        'release_dir: str = ""',
        "folder that records this release (set by `runbook release`); empty: the `runbook lab` session folder, else outputs/interactive/<date>",
    ),
    ('operator: str = ""', "who runs this step; empty: $HOTDASH_OPERATOR or the OS user"),
]


def params_cell(extra):
    lines = ["# Parameters: papermill replaces these; secrets are never parameters (only names are)."]
    late = [p for p in extra if p[0].startswith("attestations")]
    for code, comment in [p for p in extra if p not in late] + COMMON + late:
        lines.append(f"{code}  # {comment}")
    cell = new_code_cell("\n".join(lines))
    cell.metadata["tags"] = ["parameters"]
    return cell


def open_cell(kind, with_env, attestable, open_args=()):
    env = "environment=environment, " if with_env else ""
    attestations = ", attestations=attestations" if attestable else ""
    more = "".join(f",\n                   {arg}" for arg in open_args)
    return new_code_cell(
        "from hotdash_release import open_section\n\n"
        f'run = open_section("{kind}", {env}target=target, config_path=config_path,\n'
        f"                   release_dir=release_dir, operator=operator{attestations}{more})\n"
        "run"
    )


def notebook(name, title_md, env_param, kind, body):
    cells = [new_markdown_cell(title_md)]
    extra = []
    if env_param:
        extra.append((f'environment: str = "{env_param}"', "which environment of the plan: staging | production"))
    extra += body.get("extra_params", [])
    extra += body.get("late_params", [])
    cells.append(params_cell(extra))
    cells.append(open_cell(kind, bool(env_param), bool(body.get("late_params")), body.get("open_args", ())))
    for md, code in body["steps"]:
        cells.append(new_markdown_cell(md))
        cells.append(new_code_cell(code))
    for index, cell in enumerate(cells):
        cell.id = f"{name}-{index:02d}"
    nb = new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    nbformat.validate(nb)
    nbformat.write(nb, OUT / f"{name}.ipynb")


ATTEST_CHECKS = (
    "attestations: list = []",
    'manual checks a person attested: [{"check": a [smoke] manual_checks '
    'name, "by": who, "at": ISO 8601 time, "note": what they saw}]; empty: none (JupyterLab widgets ask)',
)
ATTEST_DECISION = (
    "attestations: list = []",
    'the go/no-go call a person attested: [{"check": "Go" or "No-go", '
    '"by": who, "at": ISO 8601 time, "note": the reason}]; empty: none (a JupyterLab widget asks)',
)

WATCHING = (
    'watching: str = ""',
    "the sealed release folder a later watch follows (set by `runbook watch`); empty: this release's own",
)

GATE = (
    "## Gate\nResults are values; the gate decides. If anything above failed, the cell below "
    "stops the release here and names why.",
    "run.gate()",
)

notebook(
    "preflight",
    """# Pre-deployment checklist

From the plan's **Pre-Deployment Checklist**: core functionality, database, `/health`, deployment
automation, production config (`fly.production.toml`), monitoring, validation suite, and the
workstreams (the plan's "15/17 agents complete, 88%"). What a machine can check is checked here;
what only a later step can prove says which step proves it.""",
    None,
    "preflight",
    {
        "steps": [
            (
                "## Checklist\nConfiguration, the fly config of each environment (app name, health check path), "
                "the archive folder, the deployment target, and each app's database (its `DATABASE_URL`, "
                "resolved in the library: connect, `select 1`, server version, latency, schema version).",
                "run.checklist()",
            ),
            (
                "## Workstream readiness\nRead from `readiness.csv`. The plan deploys before 100%: the go/no-go "
                "criteria judge these numbers, not this step.",
                "run.readiness()",
            ),
            GATE,
        ]
    },
)

notebook(
    "verify_secrets",
    """# Step 1: Verify secrets

```bash
flyctl secrets list --app hotdash-production
```
Required: `DATABASE_URL` (Supabase), `SHOPIFY_API_KEY`, `SHOPIFY_API_SECRET`, `SHOPIFY_APP_URL`, `SCOPES`,
`SUPABASE_URL`, `SUPABASE_ANON_KEY`. Both apps are checked, staging first since it deploys first.
Platforms list names and digests only: no value is read or shown here.""",
    None,
    "verify_secrets",
    {
        "steps": [
            (
                "## Required secrets on each app\nA missing secret blocks the release before any deploy; a staged one "
                "is applied by the coming deploy.",
                "run.verify_secrets()",
            ),
            GATE,
        ]
    },
)

notebook(
    "deploy",
    """# Deploy (Step 2: staging first, Step 4: production)

```bash
flyctl deploy --config fly.toml --app hotdash-staging              # staging
flyctl deploy --config fly.production.toml --app hotdash-production  # production
curl https://<app>.fly.dev/health   # Expected: {"status":"ok","timestamp":"..."}
```
Staging is deployed first for final validation; production follows only after the go/no-go decision.
On the local target, the rehearsal platform builds the app, runs it as a process on 127.0.0.1 and
records each release (version, status, image) the way Fly does.""",
    "staging",
    "deploy",
    {
        "extra_params": [
            (
                'rehearsal_defect: str = ""',
                "local rehearsals only: ship a broken build "
                f"({' | '.join(d for d in STANDIN_DEFECTS if d)}); empty: a good build",
            )
        ],
        "steps": [
            (
                "## Deploy\n`flyctl deploy --config <fly config> --app <app>`; the deploy output streams below.",
                "run.deploy(defect=rehearsal_defect)",
            ),
            (
                "## Verify health\n`curl <app>/health`: retried with backoff up to the deadline; the JSON must say "
                "`ok` and carry a fresh timestamp.",
                "run.check_health()",
            ),
            (
                "## Releases\n`flyctl releases --app <app>`: what is deployed now, and what a rollback would return to.",
                "run.releases()",
            ),
            (
                "## Recent logs\n`flyctl logs --app <app>`: the new release's last lines (secret values redacted).",
                "run.logs()",
            ),
            GATE,
        ],
    },
)

notebook(
    "smoke_test",
    """# Smoke test (Step 3: staging, Step 5: production)

**Test in staging / production (5 minutes):**
1. Visit the app URL
2. Verify Shopify OAuth works
3. Check dashboard loads
4. Test navigation
5. Verify no critical errors

Headless, each check proves one of these over HTTP the way a browser would (browser User-Agent,
redirects not followed): the login form and the install redirect carrying our `client_id`, App Bridge
serving our API key, the app opening inside the Shopify admin, embedding allowed, bots refused, and
webhooks refusing bad signatures. Loading the real dashboard needs a merchant session: that part stays
a manual attestation, given by a person in JupyterLab (a checkbox and a note per step) or, headless,
as the `attestations` parameter (`runbook release --attest "staging:Check dashboard loads"`).""",
    "staging",
    "smoke_test",
    {
        "late_params": [ATTEST_CHECKS],
        "steps": [
            ("## Headless checks\nRun concurrently; each records status, latency and evidence.", "run.smoke_test()"),
            (
                "## Database connected (Supabase)\nSupabase Auth's health endpoint with the anon key: reachable, no side effects.",
                "run.check_supabase()",
            ),
            (
                "## Manual steps\nWhat a person confirms in a browser, next to the headless evidence for it. "
                "In JupyterLab: open the app, tick each step you verified and note what you saw; each tick is "
                "recorded with your name and the time. The go/no-go criteria read these attestations.",
                "run.manual_checks()",
            ),
            GATE,
        ],
    },
)

notebook(
    "go_no_go",
    """# Go/No-Go decision

**GO - deploy to production** when the criteria are met: workstreams complete (the plan: 15/17, 88%),
core functionality working, production config ready, monitoring operational, validation suite passed.
**Criteria not met (but acceptable)**: agents still working on non-blocking tasks, some features
incomplete, documentation in progress. Each criterion is measured by an earlier section of this release
and judged against the threshold in `hotdash.toml`; a blocking miss is a **NO-GO**. Then a person
makes the call, Go or No-go, with a reason: a No-go stops the release whatever the criteria say.""",
    None,
    "go_no_go",
    {
        "late_params": [ATTEST_DECISION],
        "steps": [
            (
                "## Criteria\nMeasured value, threshold, verdict, and the section that measured it.",
                "decision = run.go_no_go()\ndecision",
            ),
            ("## Criteria table", "run.criteria_table()"),
            (
                "## The decision\nChoose Go or No-go and say why, then record it; it is recorded with your name "
                "and the time. Headless, the decision comes as the `attestations` parameter "
                '(`runbook release --attest "go_no_go:Go:REASON"`). Run the gate after recording.',
                "run.attest_decision()",
            ),
            GATE,
        ],
    },
)

notebook(
    "notify",
    """# Step 6: Notify the CEO

- Production URL: https://hotdash-production.fly.dev
- Expected functionality: Shopify integration, dashboard, basic navigation
- Known limitations: browser notifications (in progress), performance testing (in progress)
- Feedback channel: log issues via GitHub Issues or direct communication

The message is built from `[notification]` in `hotdash.toml`. A failed notification is reported in the
archive; it does not undo a good release.""",
    None,
    "notify",
    {"steps": [("## Send", "run.notify()"), GATE]},
)

notebook(
    "watch",
    """# Post-deployment: watch production during CEO testing

The plan's **Post-Deployment Actions, Immediate (During CEO Testing)**: monitor production logs,
watch health checks, track CEO-reported issues, and "if critical bug found: assess severity; if
blocking, roll back immediately".

For a window (`[watch] minutes`: 30 on Fly, seconds in a rehearsal) production is measured every
`interval_s`: `/health` and its latency, the new log lines that match `error_pattern`, machines not
running. `failure_limit` failed measurements in a row are a breach and end the watch; at the end the
window must meet the conditions (availability, p95 latency, error lines). On a breach, `on_breach =
"rollback"` fails the gate below and the release runner runs the rollback runbook; `"alert"` records
and tells the CEO. Issues opened on the feedback channel (GitHub Issues, `[github] repo` and a
`GITHUB_TOKEN`) since the release are listed. A signal ends the window early and keeps what it saw.

`runbook watch <release id> --minutes N` runs this notebook again later (a second round of CEO
testing) as a record of its own, sealed and chained, naming the release it watched (`watching`); a
breach then rolls back to what production served before that release.""",
    "production",
    "watch",
    {
        "extra_params": [
            WATCHING,
            (
                "watch_minutes: float = 0.0",
                "the window in minutes (set by `runbook watch --minutes`); 0: [watch] minutes",
            ),
        ],
        "open_args": ["watching=watching, watch_minutes=watch_minutes"],
        "steps": [
            (
                "## Watch\nA measurement every interval: health, latency, error lines, machines.",
                "run.watch()",
            ),
            (
                "## CEO-reported issues\nGitHub issues opened since the release started (the plan's feedback channel).",
                "run.feedback_issues()",
            ),
            (
                "## Close the watch\nA short message to the CEO with the outcome.",
                "run.close_watch()",
            ),
            GATE,
        ],
    },
)

notebook(
    "rollback",
    """# Rollback plan

The plan says:
```bash
flyctl releases --app hotdash-production
flyctl releases rollback <version> --app hotdash-production
curl https://hotdash-production.fly.dev/health
```
**`flyctl releases rollback` does not exist** (superfly/flyctl#579 is an open feature request; Fly's
rollback guide says there is no special rollback command). What Fly documents is redeploying an earlier
image (`fly deploy --image <ImageRef>`), which creates a new, higher release version. Which image: exactly
the one production served before this release's production deploy, as that deploy recorded it
(`fly status --json`, per machine), never a guess from the release list. If that image still serves
(a failed build, release command or a deploy killed before rollout leave the machines on it), nothing is
redeployed and it is verified. Without that record (this runbook run on its own) it refuses: what was
serving is unknown.

A rollback is verified like a release: `/health`, the production smoke test, and every required
secret's digest against the last good release. Fly secrets are not part of an image: a secret changed
since cannot be rolled back by image, and the rollback fails naming it (production needs a person).

Caveats from Fly's guide: the redeploy uses the **current** fly.toml, secrets and env; database
migrations are **not** undone; old images may have been pruned.

The release runner runs this notebook on its own when the production deploy or smoke test fails.""",
    "production",
    "rollback",
    {
        "extra_params": [WATCHING],
        "open_args": ["watching=watching"],
        "steps": [
            (
                "## Releases and what a rollback restores\n`flyctl releases --app <app>`, and the image production "
                "served before this release's deploy.",
                "run.rollback_candidate()",
            ),
            ("## Restore what was serving", "run.roll_back()"),
            ("## Verify health\n`curl <app>/health`", "run.check_health()"),
            (
                "## Verify with the production smoke test\nThe same checks as after a deploy, not `/health` alone.",
                "run.smoke_test()",
            ),
            (
                "## Secrets since the last good release\nEach required secret's digest against what the last "
                "released release recorded: a changed secret is not undone by an image.",
                "run.compare_secrets()",
            ),
            ("## Releases after the rollback", "run.releases()"),
            GATE,
        ],
    },
)
print(f"wrote {len(list(OUT.glob('*.ipynb')))} runbooks to {OUT}")
