"""Executable rubrics in a real sandbox: the workspace-basics checks and the AgencyBench v2 ones.

For the v2 subtasks, small reference deliverables written here (a deterministic generator, a
C++ chat app, a research-agent skeleton, stand-ins that print the metrics the rubrics read) get
the grades their rubric formulas give by hand; empty or flawed workspaces get the lower grades
the same formulas give, with the unmet items named.
"""

from __future__ import annotations

import pytest

from limi_evaluator import basics
from limi_evaluator.catalog import Catalog
from limi_evaluator.rubric import FEEDBACK_HEAD, feedback_text, grade_subtask
from limi_evaluator.settings import DEFAULT_BENCHMARKS_DIR

CATALOG = Catalog(DEFAULT_BENCHMARKS_DIR)
V2 = CATALOG.load_suite(CATALOG.resolve("agencybench-v2"))


async def grade_with_files(workspaces, task_id: str, subtask_id: str, files: dict[str, str], commands: str = ""):
    task = V2.task(task_id)
    subtask = next(s for s in task.subtasks if s.id == subtask_id)
    workspace = await workspaces.create(task.files + tuple((p, c.encode()) for p, c in files.items()))
    try:
        if commands:
            done = await workspace.exec(commands, 120)
            assert done.exit_code == 0, done.stderr
        return await grade_subtask(workspace, subtask)
    finally:
        await workspace.close()


async def test_basics_rubrics_fail_on_the_initial_workspace_and_pass_after_the_expert_plan(workspaces, apply_plan):
    for task in basics.generate(0, "test", 5) + basics.generate(5, "train", 5):
        workspace = await workspaces.create(task.files)
        try:
            for subtask in task.subtasks:
                before = await grade_subtask(workspace, subtask)
                assert before.grade < 10 and before.failed_items, (task.id, subtask.query)
                await apply_plan(workspace, basics.plan_for(subtask.query))
                after = await grade_subtask(workspace, subtask)
                assert after.grade == 10 and not after.failed_items, (task.id, after.items)
                assert feedback_text(after) == ""
            # The checks leave no bytecode behind in the agent's workspace.
            assert (await workspace.exec("find . -name __pycache__", 10)).stdout == ""
        finally:
            await workspace.close()


async def test_wrong_function_values_are_named_in_the_feedback(workspaces):
    task = next(t for t in basics.generate(0, "test", 12) if t.label("kind") == "python-function")
    subtask = task.subtasks[0]
    step = basics.plan_for(subtask.query)[0]
    workspace = await workspaces.create()
    try:
        await workspace.write_file(
            step.arguments["path"], step.arguments["content"].replace("return x", "return 1 + x").encode()
        )
        result = await grade_subtask(workspace, subtask)
    finally:
        await workspace.close()
    assert result.grade == pytest.approx(10 / 3, abs=0.01)  # defined (weight 1) but wrong values (weight 2)
    text = feedback_text(result)
    assert text.startswith(FEEDBACK_HEAD) and "returns the right values" in text and "expected" in text


GENERATOR = """
import argparse, datetime, json, pathlib, random
parser = argparse.ArgumentParser()
parser.add_argument("--seed", type=int, required=True)
parser.add_argument("--count", type=int, required=True)
parser.add_argument("--schema", required=True)
parser.add_argument("--mode", choices=["append", "overwrite"], required=True)
parser.add_argument("--out", required=True)
args = parser.parse_args()
json.loads(pathlib.Path(args.schema).read_text())
rng = random.Random(args.seed)
start = datetime.datetime(2024, 1, 1)
lines = [json.dumps({"id": f"evt-{args.seed}-{i:05d}", "timestamp": (start + datetime.timedelta(seconds=rng.randrange(86400))).isoformat(),
                     "kind": rng.choice(["create", "update", "delete"]), "payload": {"value": rng.randrange(1000)}}, sort_keys=True)
         for i in range(args.count)]
out = pathlib.Path(args.out)
out.parent.mkdir(parents=True, exist_ok=True)
with open(out, "a" if args.mode == "append" else "w") as handle:
    handle.write("\\n".join(lines) + "\\n")
pathlib.Path("logs").mkdir(exist_ok=True)
with open("logs/gen.log", "a") as log:
    log.write(f"{datetime.datetime.now().isoformat()} seed={args.seed} count={args.count} schema={args.schema} mode={args.mode} out={args.out}\\n")
"""
SCHEMA = '{"type": "object", "required": ["id", "timestamp", "kind", "payload"], "properties": {"kind": {"enum": ["create", "update", "delete"]}}}'
RUNS = """
python3 subtask1_generator.py --seed 1 --count 10 --schema domain/events.schema.json --mode overwrite --out data/events.jsonl
python3 subtask1_generator.py --seed 1 --count 5 --schema domain/events.schema.json --mode append --out data/events.jsonl
python3 subtask1_generator.py --seed 101 --count 5 --schema domain/events.schema.json --mode overwrite --out data/metadata_seed101.jsonl
python3 subtask1_generator.py --seed 202 --count 5 --schema domain/events.schema.json --mode overwrite --out data/metadata_seed202.jsonl
"""


async def test_v2_generator_rubric_gives_the_formula_grade(workspaces):
    good = await grade_with_files(
        workspaces,
        "backend-scenario3",
        "subtask1",
        {"subtask1_generator.py": GENERATOR, "domain/events.schema.json": SCHEMA},
        RUNS,
    )
    assert good.grade == 10.0, good.failed_items
    # Non-deterministic ids, only overwrite runs, one seed file, one invalid record: d=0, m=0.5, g=0.5, v=5/6.
    flawed = GENERATOR.replace("random.Random(args.seed)", "random.Random()").replace(
        'choice(["create", "update", "delete"])', 'choice(["create"])'
    )
    runs = RUNS.replace("--mode append", "--mode overwrite").splitlines()[:4]
    result = await grade_with_files(
        workspaces,
        "backend-scenario3",
        "subtask1",
        {"subtask1_generator.py": flawed, "domain/events.schema.json": SCHEMA},
        "\n".join(runs) + '\necho \'{"id": "x"}\' >> data/events.jsonl',
    )
    assert result.grade == round(10 * (0.35 * 0 + 0.25 * 5 / 6 + 0.20 * 0.5 + 0.20 * 0.5), 2)
    assert any("Determinism" in item and "different bytes" in item for item in result.failed_items)
    empty = await grade_with_files(workspaces, "backend-scenario3", "subtask1", {})
    assert empty.grade == 0.0 and len(empty.failed_items) == 4


KVSTORE = """
import json, sys
flag = sys.argv[1]
if flag == "--test-recovery":
    print("replayed WAL segment 3; RECOVERY SUCCESS")
elif flag == "--run-serializable-tests":
    print(json.dumps({"serializable_tests_passed": 9, "total_serializable_tests": 10}))
elif flag == "--run-concurrency-sim":
    print("trials_without_conflict=4 total_trials=5")
elif flag == "--bench-latency":
    print("commit_latency_ms: 10")
"""
INTEGRATION = """
import argparse, json
p = argparse.ArgumentParser()
for flag in ("--workers", "--tasks", "--force-crash"):
    p.add_argument(flag, type=int)
p.add_argument("--report")
a = p.parse_args()
json.dump({"total_tasks": a.tasks, "tasks_done": a.tasks, "forced_failures": a.force_crash, "successful_retries": a.force_crash,
           "task_distribution_stddev": 0.75, "persistence_ok": True}, open(a.report, "w"))
"""
PLANNER = """
import argparse, json
p = argparse.ArgumentParser()
for flag in ("--domain", "--goal", "--report", "--plan-export"):
    p.add_argument(flag)
a = p.parse_args()
json.load(open(a.domain)); json.load(open(a.goal))
json.dump({"success_rate": 1.0, "plan_length": 3, "nodes_expanded": 1000, "heuristic_cost": 2.5, "schedule_latency": 0.1}, open(a.report, "w"))
json.dump({"nodes": [{"id": "a"}, {"id": "b"}, {"id": "c"}], "edges": [["a", "b"], {"from": "b", "to": "c"}, ["a", "ghost"]]}, open(a.plan_export, "w"))
"""
REPAIR = """
import argparse, json
p = argparse.ArgumentParser()
p.add_argument("--simulate-failure", action="store_true")
p.add_argument("--report")
a = p.parse_args()
json.dump({"trigger": "healthcheck", "snapshot_source": "snap-1", "patch_id": "p-7", "retry_attempts": 2, "final_status": "healthy",
           "detected_failures": 2, "injected_failures": 2, "rollback_status": "OK", "successful_retries": 2, "total_retries": 2,
           "post_repair_checks_passed": 4, "total_checks": 4}, open(a.report, "w"))
"""


async def test_v2_backend_scenario3_rubrics_read_the_reported_metrics(workspaces):
    kv = await grade_with_files(workspaces, "backend-scenario3", "subtask2", {"subtask2_kvstore.py": KVSTORE})
    assert kv.grade == round(10 * (0.40 * 1 + 0.30 * 0.9 + 0.20 * 0.8 + 0.10 * 0.8), 2)
    orchestrator = await grade_with_files(
        workspaces, "backend-scenario3", "subtask3", {"subtask3_integration_test.py": INTEGRATION}
    )
    assert orchestrator.grade == round(10 * (0.4 * 1 + 0.25 * 1 + 0.2 * 0.5 + 0.15 * 1), 2)
    planner = await grade_with_files(
        workspaces,
        "backend-scenario3",
        "subtask4",
        {"subtask4_planner.py": PLANNER, "fixtures/sample_domain.json": "{}", "fixtures/sample_goal.json": "{}"},
    )
    assert planner.grade == round(10 * (0.30 * 1 + 0.25 * 2 / 3 + 0.20 * 1 + 0.15 * 0.8 + 0.10 * 0.5), 2)
    assert any("DAG validity" in item and "2 of 3" in item for item in planner.failed_items)
    repair = await grade_with_files(workspaces, "backend-scenario3", "subtask5", {"subtask5_autorepair.py": REPAIR})
    assert repair.grade == 10.0, repair.failed_items
    missing = await grade_with_files(workspaces, "backend-scenario3", "subtask5", {})
    assert missing.grade == 0.0 and len(missing.failed_items) == 5 and "no JSON report" in missing.failed_items[0]


CHAT_APP = r"""
#include <fstream>
#include <functional>
#include <iomanip>
#include <iostream>
#include <sstream>
#include <string>
using namespace std;
// A stand-in digest: the rubric checks its shape (64 hex characters), not the algorithm.
static string digest(const string& s) {
    ostringstream out; size_t h = hash<string>{}(s);
    for (int i = 0; i < 4; ++i) { h = hash<string>{}(s + to_string(h)); out << hex << setw(16) << setfill('0') << h; }
    return out.str();
}
static string slurp(const string& path) { ifstream in(path); stringstream s; s << in.rdbuf(); return s.str(); }
static string field(const string& users, const string& user, const string& key) {
    size_t at = users.find("\"username\":\"" + user + "\"");
    if (at == string::npos) return "";
    size_t start = users.find("\"" + key + "\":\"", at) + key.size() + 4;
    return users.substr(start, users.find('"', start) - start);
}
static bool ask(const string& prompt, string& answer) { cout << prompt << flush; return bool(getline(cin, answer)); }
int main(int argc, char** argv) {
    if (argc > 1 && string(argv[1]) == "--version") { cout << "1.0.0" << endl; return 0; }
    cout << "=== Chat App v1.0.0 ===" << endl;
    while (true) {
        string choice, user, password, again;
        cout << "[1] Register\n[2] Login\n[3] Exit\n";
        if (!ask("Action: ", choice) || choice == "3") return 0;
        if (choice == "1") {
            if (!ask("Username: ", user) || !ask("Password: ", password) || !ask("Password: ", again)) return 0;
            string users = slurp("data/users.json");
            if (password != again || !field(users, user, "hash").empty()) { cout << "Registration failed" << endl; continue; }
            string salt = "salt" + to_string(users.size());
            string entry = "{\"username\":\"" + user + "\",\"salt\":\"" + salt + "\",\"hash\":\"" + digest(salt + password) + "\"}";
            size_t end = users.rfind(']');
            users = (end == string::npos || users.find('{') == string::npos) ? "[" + entry + "]" : users.substr(0, end) + "," + entry + "]";
            ofstream("data/users.json") << users;
            cout << "Registration successful" << endl;
        } else if (choice == "2") {
            if (!ask("Username: ", user) || !ask("Password: ", password)) return 0;
            string users = slurp("data/users.json");
            if (field(users, user, "hash") != digest(field(users, user, "salt") + password)) { cout << "Login failed" << endl; continue; }
            ofstream("logs/session_state.json") << "{\"last_user\": \"" + user + "\"}";
            cout << "Welcome " << user << endl;
        } else {
            cout << "Invalid choice" << endl;
        }
    }
}
"""
MAKEFILE = "task1:\n\tmkdir -p bin\n\tg++ -std=c++17 -O0 -o bin/chat_app src/main.cpp\n\nclean:\n\trm -rf bin\n"


async def test_v2_cpp_chat_app_rubric_builds_and_drives_the_program(workspaces):
    good = await grade_with_files(
        workspaces, "backend-scenario1", "subtask1", {"src/main.cpp": CHAT_APP, "Makefile": MAKEFILE}
    )
    assert good.grade == 10.0, good.failed_items
    # Another prompt than the strict 'Action: ': the menu check waits in vain (Score_M = 0) -> round(10 * (0.3 + 0.5)) = 8.
    renamed = CHAT_APP.replace('ask("Action: "', 'ask("Choice: "')
    result = await grade_with_files(
        workspaces, "backend-scenario1", "subtask1", {"src/main.cpp": renamed, "Makefile": MAKEFILE}
    )
    assert result.grade == 8.0 and any(
        "Menu semantics" in item and "no 'Action: ' prompt" in item for item in result.failed_items
    )
    broken = await grade_with_files(workspaces, "backend-scenario1", "subtask1", {})
    assert broken.grade == 0.0 and any(
        "Build success" in item and "exit code 2" in item for item in broken.failed_items
    )


RESEARCH_AGENT = """
import re
from agents.research_agent_prompts import SYSTEM_PROMPT_BROWSING_DELEGATE, SYSTEM_PROMPT_RESEARCH_CORE

CJK = re.compile(r"[\\u4e00-\\u9fff]")


class ResearchAgent:
    def __init__(self, research_client, browsing_client, search_tool, browsing_agent, max_research_time_s=600, must_use_search=True):
        self.research_client, self.browsing_client = research_client, browsing_client
        self.search_tool, self.browsing_agent = search_tool, browsing_agent
        self.max_research_time_s, self.must_use_search = max_research_time_s, must_use_search

    def run(self, question, metadata=None):
        trace = {"models": {"research": "gpt-4.1", "browsing": "gpt-4.1-mini"},
                 "tools": {"search": self.search_tool is not None, "browsing": self.browsing_agent is not None},
                 "max_research_time_s": self.max_research_time_s}
        return {"answer": "placeholder answer", "trace": trace, "language": "zh" if CJK.search(question) else "en"}
"""
PROMPTS = """
SYSTEM_PROMPT_RESEARCH_CORE = "GPT-4.1 is the only allowed backbone for deep research and synthesis. Never answer fact-seeking questions without the search tool."
SYSTEM_PROMPT_BROWSING_DELEGATE = "GPT-4.1-mini is the only allowed backbone for browsing-related reasoning."
"""


async def test_v2_research_agent_rubric_imports_and_probes_the_class(workspaces):
    repo = "repositories/deep_research_agent/agents/"
    good = await grade_with_files(
        workspaces,
        "code-scenario5",
        "subtask1",
        {repo + "research_agent.py": RESEARCH_AGENT, repo + "research_agent_prompts.py": PROMPTS},
    )
    assert good.grade == 10.0, good.failed_items
    # Reading a file in __init__ and naming another model: two of five items fail.
    impure = RESEARCH_AGENT.replace(
        "self.max_research_time_s, self.must_use_search = ",
        "open('config.json', 'a').close()\n        self.max_research_time_s, self.must_use_search = ",
    )
    result = await grade_with_files(
        workspaces,
        "code-scenario5",
        "subtask1",
        {repo + "research_agent.py": impure, repo + "research_agent_prompts.py": PROMPTS + "FALLBACK = 'gpt-4o'\n"},
    )
    assert result.grade == 6.0
    failed = " ".join(result.failed_items)
    assert "Dependency purity" in failed and "open()" in failed and "Model restriction" in failed and "gpt-4o" in failed
