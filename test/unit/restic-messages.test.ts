import { describe, expect, it } from "vitest";
import { BackupSummary, parseLine, RestoreSummary } from "../../lib/restic/messages.ts";

// Lines as restic 0.18 prints them (captured from the Go-built restic the integration tests use).
const backupStatus =
  '{"message_type":"status","seconds_elapsed":3,"seconds_remaining":9,"percent_done":0.25,"total_files":40,"files_done":10,"total_bytes":4000,"bytes_done":1000,"current_files":["/a"]}';
const restoreStatus = '{"message_type":"status","seconds_elapsed":1,"percent_done":0.5,"total_files":5,"files_restored":2,"total_bytes":6,"bytes_restored":3}';
const backupSummary =
  '{"message_type":"summary","files_new":2,"files_changed":0,"files_unmodified":0,"dirs_new":2,"dirs_changed":0,"dirs_unmodified":0,"data_blobs":2,"tree_blobs":3,"data_added":1723,"data_added_packed":1059,"total_files_processed":2,"total_bytes_processed":6,"total_duration":0.641023871,"backup_start":"2026-11-26T02:17:41.738666473Z","backup_end":"2026-11-26T02:17:42.379690344Z","snapshot_id":"8964fac98a2ff5320922a72f49f58e068721575c316aa8623c524955421bd1d2"}';
const fileError = '{"message_type":"error","error":{"message":"/src/secret: open secret: permission denied"},"during":"archival","item":"/src/secret"}';
const exitError = '{"message_type":"exit_error","code":12,"message":"Fatal: wrong password or no key found"}';

describe("restic JSON lines", () => {
  it.each([
    {
      name: "backup status",
      line: backupStatus,
      want: {
        kind: "status",
        progress: { percentDone: 0.25, filesDone: 10, totalFiles: 40, bytesDone: 1000, totalBytes: 4000, secondsElapsed: 3, secondsRemaining: 9 },
      },
    },
    {
      name: "restore status",
      line: restoreStatus,
      want: { kind: "status", progress: { percentDone: 0.5, filesDone: 2, totalFiles: 5, bytesDone: 3, totalBytes: 6, secondsElapsed: 1 } },
    },
    { name: "a status with only percent_done", line: '{"message_type":"status","percent_done":0}', want: { kind: "status", progress: { percentDone: 0 } } },
    {
      name: "a percentage past 1 (a file grew)",
      line: '{"message_type":"status","percent_done":1.02}',
      want: { kind: "status", progress: { percentDone: 1 } },
    },
    { name: "file error", line: fileError, want: { kind: "error", message: "/src/secret: open secret: permission denied", item: "/src/secret" } },
    { name: "exit error", line: exitError, want: { kind: "exitError", code: 12, message: "Fatal: wrong password or no key found" } },
    { name: "plain text", line: "loading indexes...", want: { kind: "text", text: "loading indexes..." } },
    {
      name: "ANSI clear-line before text",
      line: "\u001b[2Ksignal terminated received, cleaning up",
      want: { kind: "text", text: "signal terminated received, cleaning up" },
    },
    { name: "broken JSON is text", line: '{"message_type":"status",', want: { kind: "text", text: '{"message_type":"status",' } },
    {
      name: "a known type with the wrong shape is text",
      line: '{"message_type":"exit_error","code":"x"}',
      want: { kind: "text", text: '{"message_type":"exit_error","code":"x"}' },
    },
    { name: "JSON without message_type is text", line: '{"a":1}', want: { kind: "text", text: '{"a":1}' } },
    { name: "a JSON array is text (data for the caller)", line: "[]", want: { kind: "text", text: "[]" } },
  ])("$name", ({ line, want }) => {
    expect(parseLine(line)).toEqual(want);
  });

  it("keeps unknown message types as other", () => {
    expect(parseLine('{"message_type":"verbose_status","action":"new"}')).toMatchObject({ kind: "other", messageType: "verbose_status" });
  });

  it("reads a backup summary", () => {
    const line = parseLine(backupSummary);
    expect(line.kind).toBe("summary");
    const summary = BackupSummary.parse(line.kind === "summary" ? line.value : undefined);
    expect(summary).toMatchObject({ files_new: 2, data_added: 1723, total_bytes_processed: 6, snapshot_id: expect.stringMatching(/^8964fac9/) });
  });

  it("reads a restore summary", () => {
    const line = parseLine('{"message_type":"summary","total_files":5,"files_restored":5,"total_bytes":6,"bytes_restored":6}');
    expect(RestoreSummary.parse(line.kind === "summary" ? line.value : undefined)).toMatchObject({ files_restored: 5, bytes_restored: 6 });
  });
});
