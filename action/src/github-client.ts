import { GitHubApiError } from './errors.js';
import type { Fetch } from './strata-client.js';

export interface GitHubClientOptions {
  /** GITHUB_API_URL: https://api.github.com, or a GitHub Enterprise Server's /api/v3 */
  apiUrl: string;
  token: string;
  /** owner/name */
  repository: string;
  fetch?: Fetch;
}

export interface Comment {
  id: number;
  body?: string | null;
}

export interface PullRequest {
  number: number;
  merged_at?: string | null;
}

/** Pages followed at most: 100 comments a page makes ten thousand, past any real thread. */
const MAX_PAGES = 100;

/** The few REST endpoints the action needs, over plain fetch. */
export class GitHubClient {
  private readonly fetch: Fetch;
  private readonly api: URL;

  constructor(private readonly options: GitHubClientOptions) {
    this.fetch = options.fetch ?? fetch;
    this.api = new URL(options.apiUrl.replace(/\/+$/, '') + '/');
  }

  listIssueComments(issue: number): Promise<Comment[]> {
    return this.paginate<Comment>(`${this.repo()}/issues/${issue}/comments`);
  }

  createIssueComment(issue: number, body: string): Promise<Comment> {
    return this.request<Comment>('POST', `${this.repo()}/issues/${issue}/comments`, { body });
  }

  updateIssueComment(id: number, body: string): Promise<Comment> {
    return this.request<Comment>('PATCH', `${this.repo()}/issues/comments/${id}`, { body });
  }

  listCommitComments(sha: string): Promise<Comment[]> {
    return this.paginate<Comment>(`${this.repo()}/commits/${sha}/comments`);
  }

  createCommitComment(sha: string, body: string): Promise<Comment> {
    return this.request<Comment>('POST', `${this.repo()}/commits/${sha}/comments`, { body });
  }

  updateCommitComment(id: number, body: string): Promise<Comment> {
    return this.request<Comment>('PATCH', `${this.repo()}/comments/${id}`, { body });
  }

  /** Pull requests that contain the commit or were merged as it. */
  pullsForCommit(sha: string): Promise<PullRequest[]> {
    return this.paginate<PullRequest>(`${this.repo()}/commits/${sha}/pulls`);
  }

  private repo(): string {
    const [owner, name, ...rest] = this.options.repository.split('/');
    if (!owner || !name || rest.length > 0) throw new GitHubApiError('GET', 'repos', 0, `GITHUB_REPOSITORY "${this.options.repository}" is not owner/name`);
    return `repos/${encodeURIComponent(owner)}/${encodeURIComponent(name)}`;
  }

  private async request<T>(method: string, path: string, body?: unknown): Promise<T> {
    return (await this.send(method, new URL(path, this.api), body)).data as T;
  }

  private async paginate<T>(path: string): Promise<T[]> {
    const all: T[] = [];
    let url: URL | null = new URL(path, this.api);
    url.searchParams.set('per_page', '100');
    for (let page = 0; url && page < MAX_PAGES; page++) {
      const { data, next }: { data: unknown; next: URL | null } = await this.send('GET', url);
      if (!Array.isArray(data)) throw new GitHubApiError('GET', url.pathname, 200, 'expected a list');
      all.push(...(data as T[]));
      url = next;
    }
    return all;
  }

  private async send(method: string, url: URL, body?: unknown): Promise<{ data: unknown; next: URL | null }> {
    const headers: Record<string, string> = {
      Accept: 'application/vnd.github+json',
      'X-GitHub-Api-Version': '2022-11-28',
      'User-Agent': 'strata-action',
    };
    if (this.options.token !== '') headers.Authorization = `Bearer ${this.options.token}`;
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    let res: Response;
    try {
      res = await this.fetch(url, {
        method,
        headers,
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
        signal: AbortSignal.timeout(60_000),
      });
    } catch (e) {
      throw new GitHubApiError(method, url.pathname, 0, e instanceof Error ? e.message : String(e));
    }
    const text = await res.text();
    let data: unknown = null;
    try {
      data = text === '' ? null : (JSON.parse(text) as unknown);
    } catch {
      // an HTML error page from a proxy: the status says enough
    }
    if (!res.ok) {
      const message = (data as { message?: unknown } | null)?.message;
      throw new GitHubApiError(method, url.pathname, res.status, typeof message === 'string' ? message : res.statusText || 'request failed');
    }
    return { data, next: this.nextPage(res.headers.get('link')) };
  }

  /** Follows `rel="next"` only on the API's own origin, so the token never goes elsewhere. */
  private nextPage(link: string | null): URL | null {
    if (!link) return null;
    for (const part of link.split(',')) {
      const m = /<([^>]+)>\s*;\s*rel="?([^";]+)"?/.exec(part.trim());
      if (m?.[2]?.split(/\s+/).includes('next')) {
        const next = new URL(m[1]!, this.api);
        return next.origin === this.api.origin ? next : null;
      }
    }
    return null;
  }
}
