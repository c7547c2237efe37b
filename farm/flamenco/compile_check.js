// Runs film_recovery.js's compileJob under node with a small stand-in for Flamenco's `author` API
// (author.Task, author.Command, task.addCommand, task.addDependency, job.addTask, as Flamenco's
// internal/manager/job_compilers/author.go defines them) and prints the authored job as JSON.
// Usage: node compile_check.js job.json   (job.json: {"name", "settings": {...}})
"use strict";
const fs = require("fs");
const path = require("path");

let nextId = 0;
global.author = {
    Task(name, type) {
        if (!String(name).trim()) throw "author.Task(name, type): name is required";
        if (!String(type).trim()) throw "author.Task(name, type): type is required";
        return {
            uuid: `task-${nextId++}`, name, type, priority: 50, commands: [], dependencies: [],
            addCommand(command) { this.commands.push(command); },
            addDependency(task) { this.dependencies.push(task); },
        };
    },
    Command(name, parameters, totalStepCount) {
        return { name, parameters, totalStepCount: totalStepCount || 0 };
    },
};
global.print = (...args) => process.stderr.write(args.join(" ") + "\n");

const { JOB_TYPE, compileJob } = require(path.join(__dirname, "film_recovery.js"));
const job = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
job.tasks = [];
job.addTask = (task) => job.tasks.push(task);
try {
    compileJob(job);
} catch (e) {
    process.stdout.write(JSON.stringify({ error: String(e) }) + "\n");
    process.exit(3);
}
process.stdout.write(JSON.stringify({
    job_type: JOB_TYPE.label,
    settings: JOB_TYPE.settings.map((s) => s.key),
    tasks: job.tasks.map((t) => ({
        name: t.name, type: t.type, commands: t.commands,
        dependencies: t.dependencies.map((d) => d.name),
    })),
}) + "\n");
