// zigbee-herdsman's Controller as the host of a Z-Stack stick (our simulator, on a pty).
// Usage: node host.js <zigbee-herdsman package dir> <port> <work dir> [--expect-reports N]
// Prints one JSON object per line: what the controller did and saw. Exits 0 once it has
// started, read the network parameters, made a backup, opened the network and received N
// attribute reports (not Basic) from joined devices it has identified (model known); non-zero on any
// failure or timeout.
"use strict";
const path = require("node:path");
const fs = require("node:fs");

const [pkg, port, work] = process.argv.slice(2, 5);
const expectIdx = process.argv.indexOf("--expect-reports");
const expectReports = expectIdx > 0 ? Number(process.argv[expectIdx + 1]) : 1;
const herdsman = require(path.resolve(pkg));

const out = (obj) => process.stdout.write(`${JSON.stringify(obj)}\n`);
const debug = process.env.HERDSMAN_DEBUG === "1";
const log = (level) => (msg, ns) => {
    const text = typeof msg === "function" ? msg() : msg;
    if (level === "error" || level === "warning" || debug) out({ log: level, ns, msg: String(text) });
};
herdsman.setLogger({ debug: log("debug"), info: log("info"), warning: log("warning"), error: log("error") });

const controller = new herdsman.Controller({
    network: {
        panID: 0x1a63,
        extendedPanID: [0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8],
        channelList: [15],
        networkKey: [1, 3, 5, 7, 9, 11, 13, 15, 0, 2, 4, 6, 8, 10, 12, 13],
    },
    serialPort: { path: port, adapter: "zstack", baudRate: 115200, rtscts: false },
    databasePath: path.join(work, "database.db"),
    databaseBackupPath: path.join(work, "database.db.backup"),
    backupPath: path.join(work, "coordinator_backup.json"),
    adapter: { disableLED: true },
    acceptJoiningDeviceHandler: async () => true,
});

let reports = 0;
let finished = false;
const done = async (code) => {
    if (finished) return;
    finished = true;
    try {
        await controller.stop();
    } catch (e) {
        out({ event: "stop_failed", error: String(e) });
    }
    out({ event: "stopped" });
    process.exit(code);
};
const timer = setTimeout(() => {
    out({ event: "timeout", reports });
    done(2);
}, Number(process.env.HERDSMAN_TIMEOUT_MS || 90000));

controller.on("deviceJoined", (d) => out({ event: "deviceJoined", ieee: d.device.ieeeAddr }));
controller.on("deviceAnnounce", (d) => out({ event: "deviceAnnounce", ieee: d.device.ieeeAddr }));
controller.on("deviceInterview", (d) =>
    out({ event: "deviceInterview", status: d.status, ieee: d.device.ieeeAddr, model: d.device.modelID ?? null }),
);
controller.on("message", (m) => {
    out({
        event: "message",
        type: m.type,
        ieee: m.device.ieeeAddr,
        model: m.device.modelID ?? null,
        cluster: m.cluster,
        data: m.data,
    });
    if (m.type === "attributeReport" && m.device.modelID && m.cluster !== "genBasic") {
        reports += 1;
        if (reports >= expectReports) {
            clearTimeout(timer);
            done(0);
        }
    }
});

(async () => {
    try {
        const result = await controller.start();
        out({ event: "started", result });
        const params = await controller.getNetworkParameters();
        out({ event: "networkParameters", panID: params.panID, extendedPanID: params.extendedPanID, channel: params.channel });
        const coordinator = await controller.getCoordinatorVersion();
        out({ event: "coordinatorVersion", type: coordinator.type, meta: coordinator.meta });
        await controller.backup();
        const backup = JSON.parse(fs.readFileSync(path.join(work, "coordinator_backup.json"), "utf8"));
        out({ event: "backup", backup });
        await controller.permitJoin(60);
        out({ event: "permitJoin" });
    } catch (e) {
        out({ event: "error", error: String(e && e.stack ? e.stack : e) });
        clearTimeout(timer);
        done(1);
    }
})();
