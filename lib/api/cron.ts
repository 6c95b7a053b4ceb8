import { anyOf, doesNotMatch, matches } from "./rules.ts";
import type { Rule } from "./rules.ts";

// Admission-time checks of a cron expression: the field count and each field's values. They are regexes so CEL
// can run them with a small, predictable cost. What a regex cannot see (a range written backwards, 31 February)
// is left to the scheduler, which reports it on the schedule's status.

const MACROS = ["yearly", "annually", "monthly", "weekly", "daily", "midnight", "hourly"] as const;

/** `JAN` → `[Jj][Aa][Nn]`: names in any case, without flags (RE2 and JavaScript spell flags differently). */
function anyCase(name: string): string {
  return [...name].map((c) => `[${c.toUpperCase()}${c.toLowerCase()}]`).join("");
}

interface CronField {
  readonly name: string;
  readonly range: string;
  /** A regex for one value of the field. */
  readonly value: string;
  /** `?` means "no specific value"; cron accepts it only in the two day fields. */
  readonly question: boolean;
}

const MONTHS = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"];
const WEEKDAYS = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

const FIELDS: readonly CronField[] = [
  { name: "minute", range: "0-59", value: "[0-5]?[0-9]", question: false },
  { name: "hour", range: "0-23", value: "[01]?[0-9]|2[0-3]", question: false },
  { name: "day-of-month", range: "1-31", value: "0?[1-9]|[12][0-9]|3[01]", question: true },
  { name: "month", range: "1-12 or JAN-DEC", value: ["0?[1-9]|1[0-2]", ...MONTHS.map(anyCase)].join("|"), question: false },
  { name: "day-of-week", range: "0-7 or SUN-SAT", value: ["[0-7]", ...WEEKDAYS.map(anyCase)].join("|"), question: true },
];

/** One field: a comma-separated list of `*`, a value or a range, each with an optional `/step`. */
function fieldRegex(field: CronField): string {
  const start = field.question ? "\\*|\\?" : "\\*";
  const item = `(${start}|(${field.value})(-(${field.value}))?)(/0*[1-9][0-9]*)?`;
  return `${item}(,${item})*`;
}

const FIVE_FIELDS = "^\\s*\\S+(\\s+\\S+){4}\\s*$";
const MACRO = `^\\s*@(${MACROS.join("|")})\\s*$`;

/** A regex that matches five fields whose `index`th one is valid; the other four may be anything. */
function positionalRegex(index: number): string {
  const parts = FIELDS.map((field, i) => (i === index ? `(${fieldRegex(field)})` : "\\S+"));
  return `^\\s*${parts.join("\\s+")}\\s*$`;
}

const shapeRule = anyOf(
  "schedule must be a cron expression with 5 fields (minute hour day-of-month month day-of-week) " + `or one of ${MACROS.map((m) => `@${m}`).join(", ")}`,
  matches(MACRO, "schedule is a macro"),
  matches(FIVE_FIELDS, "schedule has 5 fields"),
);

/** A field rule only judges five-field expressions; the shape rule reports everything else, once. */
function fieldRule(field: CronField, index: number): Rule<string> {
  return anyOf(
    `schedule's ${field.name} field must be *, a value, a range or a list of them (each with an optional /step), ` + `using ${field.range}`,
    doesNotMatch(FIVE_FIELDS, "schedule does not have 5 fields"),
    matches(positionalRegex(index), `schedule's ${field.name} field is valid`),
  );
}

/** The rules a `schedule` string must pass, in the order a reader would check them. */
export const cronRules: readonly Rule<string>[] = [shapeRule, ...FIELDS.map(fieldRule)];
