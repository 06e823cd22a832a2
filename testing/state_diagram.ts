/** Renders a saga's transition table as a Mermaid state diagram, so a test can hold the docs to it. */

/** One row of a transition table: an event moves a state to another (or the same), or is ignored. */
export type DiagramRow =
  | { from: string; on: string; to: string; effect?: string }
  | { from: string; on: string; ignored: string };

/**
 * The `stateDiagram-v2` text of `rows`, in their order: one arrow per transition, labelled with its
 * events (those with the same effect share it) and effect, and per state one note naming the events
 * it ignores and why. `[*]` is the start; `start` is an arrow from it into the first state.
 */
export function stateDiagram(rows: DiagramRow[], start?: { to: string; on: string }): string {
  const arrows = new Map<string, { from: string; to: string; effect?: string; on: string[] }>();
  const ignored = new Map<string, Map<string, string[]>>();
  for (const row of rows) {
    if ("to" in row) {
      const key = `${row.from} ${row.to} ${row.effect}`;
      const arrow = arrows.get(key) ?? { ...row, on: [] };
      arrow.on.push(row.on);
      arrows.set(key, arrow);
      continue;
    }
    const byWhy = ignored.get(row.from) ?? new Map<string, string[]>();
    byWhy.set(row.ignored, [...byWhy.get(row.ignored) ?? [], row.on]);
    ignored.set(row.from, byWhy);
  }
  const lines = ["stateDiagram-v2"];
  if (start) lines.push(`  [*] --> ${start.to} : ${start.on}`);
  for (const { from, to, effect, on } of arrows.values()) {
    lines.push(`  ${from} --> ${to} : ${on.join(" or ")}${effect ? ` / ${effect}` : ""}`);
  }
  for (const [state, byWhy] of ignored) {
    const what = [...byWhy].map(([why, events]) => `ignores ${events.join(", ")} (${why})`);
    lines.push(`  note right of ${state} : ${what.join(" · ")}`);
  }
  return lines.join("\n") + "\n";
}

/** Asserts `docs/architecture.md` holds `diagram` as a Mermaid block, character for character. */
export async function assertDocumented(diagram: string): Promise<void> {
  const doc = await Deno.readTextFile(new URL("../docs/architecture.md", import.meta.url));
  if (!doc.includes("```mermaid\n" + diagram + "```\n")) {
    throw new Error(
      `docs/architecture.md does not show this state diagram; paste it as a mermaid block:\n${diagram}`,
    );
  }
}
