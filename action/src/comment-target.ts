import type { Comment, GitHubClient } from './github-client.js';

export type CommentTarget = { kind: 'pull'; number: number } | { kind: 'commit'; sha: string };

export interface EventContext {
  /** GITHUB_EVENT_NAME */
  name: string;
  /** the parsed GITHUB_EVENT_PATH file */
  payload: Record<string, unknown>;
  /** GITHUB_SHA: for a release, the last commit of the tagged release */
  sha: string;
}

export type Targets = { targets: CommentTarget[]; why: string };

/**
 * Where this run's report belongs: the pull request under review; for a release, the pull
 * requests merged as its commit, or the commit itself when it came in without one.
 */
export async function commentTargets(event: EventContext, github: Pick<GitHubClient, 'pullsForCommit'>): Promise<Targets> {
  switch (event.name) {
    case 'pull_request':
    case 'pull_request_target': {
      const number = (event.payload.pull_request as { number?: unknown } | undefined)?.number;
      if (typeof number !== 'number') return { targets: [], why: `the ${event.name} event names no pull request` };
      return { targets: [{ kind: 'pull', number }], why: `pull request #${number}` };
    }
    case 'release': {
      const sha = releaseSha(event);
      if (!sha) return { targets: [], why: 'the release event names no commit' };
      const merged = (await github.pullsForCommit(sha)).filter((p) => p.merged_at);
      if (merged.length === 0) return { targets: [{ kind: 'commit', sha }], why: `commit ${sha.slice(0, 7)} (no pull request merged as it)` };
      const numbers = [...new Set(merged.map((p) => p.number))];
      return { targets: numbers.map((number) => ({ kind: 'pull', number })), why: `pull request${numbers.length > 1 ? 's' : ''} ${numbers.map((n) => `#${n}`).join(', ')} merged as ${sha.slice(0, 7)}` };
    }
    default:
      return { targets: [], why: `a ${event.name || 'unknown'} event has no pull request or release to comment on` };
  }
}

function releaseSha(event: EventContext): string | null {
  if (/^[0-9a-f]{40}$/i.test(event.sha)) return event.sha;
  // GITHUB_SHA is always set by the runner; the payload's branch-or-sha is the fallback for hand-made events
  const target = (event.payload.release as { target_commitish?: unknown } | undefined)?.target_commitish;
  return typeof target === 'string' && /^[0-9a-f]{40}$/i.test(target) ? target : null;
}

/**
 * Creates the report comment or edits the one an earlier run left, found by the marker, so a pull
 * request carries one report however often the workflow runs.
 */
export async function upsertComment(
  github: Pick<GitHubClient, 'listIssueComments' | 'createIssueComment' | 'updateIssueComment' | 'listCommitComments' | 'createCommitComment' | 'updateCommitComment'>,
  target: CommentTarget,
  marker: string,
  body: string,
): Promise<{ action: 'created' | 'updated'; id: number }> {
  const ours = (comments: Comment[]) => comments.find((c) => typeof c.body === 'string' && c.body.includes(marker));
  if (target.kind === 'pull') {
    const existing = ours(await github.listIssueComments(target.number));
    if (!existing) return { action: 'created', id: (await github.createIssueComment(target.number, body)).id };
    await github.updateIssueComment(existing.id, body);
    return { action: 'updated', id: existing.id };
  }
  const existing = ours(await github.listCommitComments(target.sha));
  if (!existing) return { action: 'created', id: (await github.createCommitComment(target.sha, body)).id };
  await github.updateCommitComment(existing.id, body);
  return { action: 'updated', id: existing.id };
}
