"""Made-up PR changes that add or restructure features: an API parameter, a UI prop, a deployment probe,
an extracted helper, a faster search, a new metric.

One function per kind (see synthetic_pr_changes.py for `Change` and the helpers); phrasings are drawn
from several variants so that descriptions differ the way real ones do. Invented code for tests.
"""

from __future__ import annotations

import random

from limi_testing.synthetic_pr_changes import Change, ident, pick, random_hunk, source_path


def backend(rng: random.Random, ctx: dict, subject: Change | None = None) -> Change:
    lang, noun, module, limit = ctx["language"], ctx["noun"], ctx["module"], ctx["limit"]
    fn = ident(lang, "list", noun + "s", "handler")
    path = source_path(ctx, "handlers")
    code = {
        "py": (
            f"async def {fn}(request):",
            ["    params = request.query"],
            [f"    rows = await request.app.db.fetch_{noun}s()", "    return json_response(rows)"],
            [
                "    try:",
                f'        limit = int(params.get("limit", {limit}))',
                "    except ValueError:",
                '        raise HTTPBadRequest(reason="limit must be an integer")',
                f"    if not 1 <= limit <= {limit * 10}:",
                f'        raise HTTPBadRequest(reason="limit must be between 1 and {limit * 10}")',
                f'    rows = await request.app.db.fetch_{noun}s(limit=limit, after=params.get("after"))',
                '    return json_response({"items": rows, "next": rows[-1]["id"] if rows else None})',
            ],
            [],
        ),
        "go": (
            f"func (h *Handler) {fn}(w http.ResponseWriter, r *http.Request) {{",
            [],
            [f"\trows, _ := h.db.List{noun.capitalize()}s(r.Context())", "\twriteJSON(w, rows)"],
            [
                f"\tlimit := {limit}",
                '\tif raw := r.URL.Query().Get("limit"); raw != "" {',
                "\t\tn, err := strconv.Atoi(raw)",
                f"\t\tif err != nil || n < 1 || n > {limit * 10} {{",
                f'\t\t\thttp.Error(w, "limit must be between 1 and {limit * 10}", http.StatusBadRequest)',
                "\t\t\treturn",
                "\t\t}",
                "\t\tlimit = n",
                "\t}",
                f'\trows, err := h.db.List{noun.capitalize()}s(r.Context(), limit, r.URL.Query().Get("after"))',
                "\tif err != nil {",
                "\t\thttp.Error(w, err.Error(), http.StatusInternalServerError)",
                "\t\treturn",
                "\t}",
                "\twriteJSON(w, page(rows))",
            ],
            ["}"],
        ),
    }.get(lang)
    if code is None:
        return refactoring(rng, ctx)
    title = pick(
        rng,
        f"Paginate GET /{module}/{noun}s",
        f"Add limit and cursor to the {noun} listing endpoint",
        f"{module}: validate the limit parameter of {fn}",
    )
    body = pick(
        rng,
        f"The {noun} listing returned every row; large tenants time out. Adds `limit` (1-{limit * 10}, default {limit}) and an `after` cursor, and rejects bad values with 400.",
        f"Clients asked for cursor pagination on the {noun} list (#{ctx['issue']}). This adds it, with input validation so a bad `limit` no longer turns into a 500.",
    )
    return Change("backend", title, body, [path], random_hunk(path, rng, code[0], *code[1:]))


def frontend(rng: random.Random, ctx: dict, subject: Change | None = None) -> Change:
    noun, module = ctx["noun"], ctx["module"]
    component = f"{noun.capitalize()}{pick(rng, 'Card', 'Row', 'Picker', 'Panel', 'Badge')}"
    path = f"src/components/{module}/{component}.tsx"
    before = [f"export function {component}({{ {noun}, onSelect }}: {component}Props) {{", "  return ("]
    removed = [
        f'    <button className="{noun}-button" onClick={{() => onSelect({noun}.id)}}>',
        f"      {{{noun}.label}}",
        "    </button>",
    ]
    added = [
        "    <button",
        f'      className={{cx("{noun}-button", {{ "is-disabled": disabled }})}}',
        "      disabled={disabled}",
        "      aria-disabled={disabled}",
        f"      onClick={{() => !disabled && onSelect({noun}.id)}}",
        "    >",
        f"      {{{noun}.label}}",
        "    </button>",
    ]
    title = pick(
        rng,
        f"Add a disabled state to {component}",
        f"{component}: support `disabled` with proper aria attributes",
        f"ui: let {component} be disabled while saving",
    )
    body = pick(
        rng,
        f"While a {noun} is being saved users could click {component} twice and create duplicates. Adds a `disabled` prop that greys the button out and sets aria-disabled for screen readers.",
        f"Design asked for a disabled look on {component} (#{ctx['issue']}); the click handler must also ignore clicks while disabled.",
    )
    diff = random_hunk(path, rng, f"export function {component}", before, removed, added, ["  );", "}"])
    return Change("frontend", title, body, [path], diff)


def deployment(rng: random.Random, ctx: dict, subject: Change | None = None) -> Change:
    name = ctx["repository"].split("/")[1]
    path = pick(rng, f"deploy/helm/{name}/templates/deployment.yaml", f"deploy/k8s/{ctx['module']}-deployment.yaml")
    before = [
        "      containers:",
        f"        - name: {ctx['module']}",
        '          image: "{{ .Values.image.repository }}:{{ .Values.image.tag }}"',
    ]
    added = [
        "          readinessProbe:",
        "            httpGet:",
        "              path: /healthz",
        "              port: http",
        f"            periodSeconds: {ctx['seconds']}",
        "          resources:",
        "            requests:",
        "              cpu: 100m",
        "              memory: 128Mi",
        "            limits:",
        "              memory: 512Mi",
    ]
    title = pick(
        rng,
        f"Add a readiness probe and resource limits to the {ctx['module']} deployment",
        f"helm: {ctx['module']} gets readinessProbe and memory limits",
        f"deploy: stop routing traffic to {ctx['module']} pods before they are ready",
    )
    body = pick(
        rng,
        f"During rollouts the {ctx['module']} pods received traffic before warming their caches and returned 503s. A readiness probe on /healthz fixes that; memory limits keep a leak from taking the node down.",
        f"Our cluster policy now requires requests and limits on every container (#{ctx['issue']}). This adds them to {ctx['module']}, plus the missing readiness probe.",
    )
    return Change(
        "deployment",
        title,
        body,
        [path],
        random_hunk(path, rng, "spec:", before, [], added, ["          ports:", "            - name: http"]),
    )


def refactoring(rng: random.Random, ctx: dict, subject: Change | None = None) -> Change:
    lang, noun, module = ctx["language"], ctx["noun"], ctx["module"]
    helper = ident(lang, "normalize", noun, "key")
    path = source_path(ctx, f"{noun}_keys")
    code = {
        "py": (
            f"def store_{noun}(self, key, value):",
            [],
            ["        self._data[key.strip().lower().replace(' ', '_')] = value"],
            [
                f"        self._data[{helper}(key)] = value",
                "",
                "",
                f"def {helper}(key: str) -> str:",
                f'    """The canonical form of a {noun} key: trimmed, lower case, underscores."""',
                '    return "_".join(key.strip().lower().split())',
            ],
            [],
        ),
        "ts": (
            f"export function store{noun.capitalize()}(key: string, value: unknown) {{",
            [],
            ['  data.set(key.trim().toLowerCase().replace(/ /g, "_"), value);'],
            [
                f"  data.set({helper}(key), value);",
                "}",
                "",
                f"export function {helper}(key: string): string {{",
                '  return key.trim().toLowerCase().split(/\\s+/).join("_");',
            ],
            ["}"],
        ),
        "go": (
            f"func (s *Store) Put{noun.capitalize()}(key string, value any) {{",
            [],
            ['\ts.data[strings.ReplaceAll(strings.ToLower(strings.TrimSpace(key)), " ", "_")] = value'],
            [
                f"\ts.data[{helper}(key)] = value",
                "}",
                "",
                f"// {helper} returns the canonical form of a {noun} key.",
                f"func {helper}(key string) string {{",
                '\treturn strings.Join(strings.Fields(strings.ToLower(key)), "_")',
            ],
            ["}"],
        ),
    }.get(lang)
    if code is None:
        return algorithm(rng, ctx)
    title = pick(
        rng,
        f"Extract {helper} and use it everywhere {noun} keys are built",
        f"refactor({module}): one place to normalize {noun} keys",
        f"Deduplicate {noun} key normalization",
    )
    body = pick(
        rng,
        f"Three call sites normalized {noun} keys slightly differently (tabs and double spaces were kept in one of them). This extracts `{helper}` so the rule lives in one place.",
        f"Pure refactor ahead of #{ctx['issue']}: pull the {noun} key normalization into a helper. Behaviour changes only for keys with repeated whitespace.",
    )
    return Change("refactoring", title, body, [path], random_hunk(path, rng, code[0], *code[1:]))


def algorithm(rng: random.Random, ctx: dict, subject: Change | None = None) -> Change:
    lang, noun = ctx["language"], ctx["noun"]
    fn = ident(lang, "find", noun, "at")
    path = source_path(ctx, f"{noun}_index")
    code = {
        "py": (
            f"def {fn}(self, timestamp):",
            [f'    """The last {noun} at or before `timestamp` (entries are sorted by time)."""'],
            [
                "    found = None",
                "    for entry in self._entries:",
                "        if entry.time <= timestamp:",
                "            found = entry",
                "    return found",
            ],
            [
                "    position = bisect.bisect_right(self._times, timestamp)",
                "    return self._entries[position - 1] if position else None",
            ],
            [],
        ),
        "go": (
            f"func (ix *Index) {fn}(ts int64) *Entry {{",
            [],
            [
                "\tvar found *Entry",
                "\tfor i := range ix.entries {",
                "\t\tif ix.entries[i].Time <= ts {",
                "\t\t\tfound = &ix.entries[i]",
                "\t\t}",
                "\t}",
                "\treturn found",
            ],
            [
                "\ti := sort.Search(len(ix.entries), func(i int) bool { return ix.entries[i].Time > ts })",
                "\tif i == 0 {",
                "\t\treturn nil",
                "\t}",
                "\treturn &ix.entries[i-1]",
            ],
            ["}"],
        ),
        "rs": (
            f"pub fn {fn}(&self, ts: i64) -> Option<&Entry> {{",
            [],
            ["    self.entries.iter().filter(|e| e.time <= ts).last()"],
            [
                "    let i = self.entries.partition_point(|e| e.time <= ts);",
                "    if i == 0 { None } else { Some(&self.entries[i - 1]) }",
            ],
            ["}"],
        ),
    }.get(lang)
    if code is None:
        return refactoring(rng, ctx)
    title = pick(
        rng,
        f"Binary search in {fn} instead of a linear scan",
        f"{noun} index: O(log n) lookups by time",
        f"Make {fn} logarithmic",
    )
    body = pick(
        rng,
        f"`{fn}` scanned every entry; with a million {noun}s a lookup took 30 ms. Entries are already sorted by time, so a binary search gives the same answer in microseconds.",
        f"Lookups by timestamp dominate the replay profile (#{ctx['issue']}). The index is sorted; use a binary search and keep the same semantics (last entry at or before the time).",
    )
    return Change("algorithm", title, body, [path], random_hunk(path, rng, code[0], *code[1:]))


def research(rng: random.Random, ctx: dict, subject: Change | None = None) -> Change:
    if ctx["language"] != "py":
        return algorithm(rng, ctx)
    bins = rng.choice((10, 15, 20))
    path = f"src/{ctx['repository'].split('/')[1].replace('-', '_')}/metrics/calibration.py"
    added = [
        f"def expected_calibration_error(confidences, correct, bins={bins}):",
        '    """Mean gap between confidence and accuracy over equal-width bins (Guo et al., 2017)."""',
        "    confidences, correct = np.asarray(confidences), np.asarray(correct, dtype=float)",
        "    edges = np.linspace(0.0, 1.0, bins + 1)",
        "    error = 0.0",
        "    for low, high in zip(edges[:-1], edges[1:]):",
        "        mask = (confidences > low) & (confidences <= high)",
        "        if mask.any():",
        "            error += mask.mean() * abs(confidences[mask].mean() - correct[mask].mean())",
        "    return float(error)",
    ]
    title = pick(
        rng,
        "Add expected calibration error to the evaluation metrics",
        "metrics: report ECE next to accuracy",
        "Calibration metric for the eval report",
    )
    body = pick(
        rng,
        f"To compare fine-tuned checkpoints we need calibration, not only accuracy. Adds ECE with {bins} equal-width bins and reports it in the summary table.",
        f"Reviewers of the paper draft asked for calibration numbers (#{ctx['issue']}). This implements expected calibration error as in Guo et al.",
    )
    return Change(
        "research", title, body, [path], random_hunk(path, rng, "", ["import numpy as np", ""], [], added, [])
    )
