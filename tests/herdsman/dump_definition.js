// Prints zigbee-herdsman's Z-Stack MT command table as JSON (for tests/test_znp_crosscheck.py).
// Usage: node dump_definition.js <path of the zigbee-herdsman package>
"use strict";
const path = require("node:path");
const root = path.resolve(process.argv[2]);
const znp = path.join(root, "dist", "adapter", "z-stack");
const definition = require(path.join(znp, "znp", "definition.js")).default;
const ParameterType = require(path.join(znp, "znp", "parameterType.js")).default;
const { Type, Subsystem } = require(path.join(znp, "unpi", "constants.js"));
const params = (list) =>
    list === undefined ? null : list.map((p) => ({ name: p.name, type: ParameterType[p.parameterType] }));
const out = [];
for (const [subsystem, commands] of Object.entries(definition)) {
    for (const cmd of commands) {
        out.push({
            subsystem: Subsystem[Number(subsystem)],
            subsystem_id: Number(subsystem),
            name: cmd.name,
            id: cmd.ID,
            type: Type[cmd.type],
            zdo_cluster: cmd.zdoClusterId === undefined ? null : cmd.zdoClusterId,
            request: params(cmd.request),
            response: params(cmd.response),
        });
    }
}
const version = require(path.join(root, "package.json")).version;
process.stdout.write(JSON.stringify({ version, commands: out }));
