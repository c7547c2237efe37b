// SPDX-License-Identifier: GPL-3.0-or-later
//
// Film Recovery job type for Flamenco Manager: runs a Film Recovery plan (plan.json, written by
// `python -m ml plan job.json`) as Flamenco tasks. Install: copy this file into the Manager's
// `scripts/` folder and restart the Manager. Submit from Blender (Farm panel > Submit to Flamenco)
// or with POST /api/v3/jobs (type "film-recovery").
//
// The add-on compiles the plan into `settings.tasks` (one entry per engine task: id, kind, unit,
// after, frames; `python -m ml farm plan.json --flamenco` prints the whole submission), so this script
// needs no file access: per unit a dataset, a train and a score task, then one inference task per
// frame chunk of each shot, each depending on the tasks of its unit's model. Every task is one
// `exec` command running `python -m ml farm <plan> --task <id>`, the engine's idempotent task
// runner (finished tasks are skipped; training resumes from its checkpoint; inference skips the
// frames its model already wrote), on a worker that sees the plan's folders.

const JOB_TYPE = {
    label: "Film Recovery",
    description: "Train Film Recovery units and run chunked inference from a plan.json",
    settings: [
        { key: "plan", type: "string", subtype: "file_path", required: true,
          description: "plan.json written by `python -m ml plan job.json` (a path the workers can read)" },
        { key: "python", type: "string", required: true, default: "python3",
          description: "Python with torch on the workers (runs `-m ml`)" },
        { key: "engine_root", type: "string", subtype: "dir_path", required: true,
          description: "Folder holding the Film Recovery engine (the `ml` package), as the workers see it" },
        { key: "tasks", type: "string", required: true, visible: "hidden",
          description: "JSON list of the plan's tasks: {id, kind, unit, after, frames}" },
        { key: "retries", type: "int32", default: 0, visible: "submission",
          description: "Retries inside a task before Flamenco sees it fail" },
    ]
};

// `python -c ENGINE_MAIN <engine_root> <ml arguments...>`: the engine's CLI from its folder, with no
// environment variables to set on the worker.
const ENGINE_MAIN = "import sys; sys.path.insert(0, sys.argv.pop(1)); from ml.cli import main; sys.exit(main())";

const TASK_TYPES = { dataset: "misc", train: "film-recovery-gpu", score: "misc", infer: "film-recovery-gpu" };

function compileJob(job) {
    const settings = job.settings;
    if (!settings.plan) {
        throw "no plan: set the plan setting to the plan.json path";
    }
    let tasks;
    try {
        tasks = JSON.parse(settings.tasks);
    } catch (e) {
        throw `the tasks setting is not valid JSON (${e})`;
    }
    if (!Array.isArray(tasks) || tasks.length == 0) {
        throw "the plan has no tasks";
    }
    const authored = {};
    for (const spec of tasks) {
        if (!spec.id || !spec.kind || !(spec.kind in TASK_TYPES)) {
            throw `task ${JSON.stringify(spec)} has no id or an unknown kind`;
        }
        if (spec.id in authored) {
            throw `task ${spec.id} is listed twice`;
        }
        const task = author.Task(spec.id, TASK_TYPES[spec.kind]);
        task.addCommand(author.Command("exec", {
            exe: settings.python,
            args: ["-c", ENGINE_MAIN, settings.engine_root, "--json", "farm", settings.plan, "--task", spec.id,
                   "--retries", String(settings.retries || 0)],
        }));
        for (const dependency of spec.after || []) {
            if (!(dependency in authored)) {
                throw `task ${spec.id} depends on ${dependency}, which is not listed before it`;
            }
            task.addDependency(authored[dependency]);
        }
        authored[spec.id] = task;
        job.addTask(task);
    }
}

// Under node (the project's test), export the pieces; Flamenco's goja runtime has no `module`.
if (typeof module !== "undefined") {
    module.exports = { JOB_TYPE, compileJob, TASK_TYPES, ENGINE_MAIN };
}
