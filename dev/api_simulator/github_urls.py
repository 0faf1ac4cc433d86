"""The hypermedia fields GitHub puts in every user, repository and pull request object.

GitHub's REST API description (github/rest-api-description, schemas `simple-user`, `repository`,
`full-repository`, `pull-request`, `pull-request-simple`) marks these fields required, so a client
generated from it (githubkit, octokit) refuses an object without them. Values follow the examples of
https://docs.github.com/en/rest/repos/repos#get-a-repository and
https://docs.github.com/en/rest/pulls/pulls#get-a-pull-request (URI templates as GitHub writes them).
"""
from __future__ import annotations

from typing import Any

API_ROOT = "https://api.github.com"
WEB_ROOT = "https://github.com"
# Templated repository URLs: name -> the part after /repos/<owner>/<repo>.
_REPOSITORY_URLS = {
    "archive_url": "/{archive_format}{/ref}", "assignees_url": "/assignees{/user}", "blobs_url": "/git/blobs{/sha}",
    "branches_url": "/branches{/branch}", "collaborators_url": "/collaborators{/collaborator}",
    "comments_url": "/comments{/number}", "commits_url": "/commits{/sha}", "compare_url": "/compare/{base}...{head}",
    "contents_url": "/contents/{+path}", "contributors_url": "/contributors", "deployments_url": "/deployments",
    "downloads_url": "/downloads", "events_url": "/events", "forks_url": "/forks",
    "git_commits_url": "/git/commits{/sha}", "git_refs_url": "/git/refs{/sha}", "git_tags_url": "/git/tags{/sha}",
    "hooks_url": "/hooks", "issue_comment_url": "/issues/comments{/number}",
    "issue_events_url": "/issues/events{/number}", "issues_url": "/issues{/number}", "keys_url": "/keys{/key_id}",
    "labels_url": "/labels{/name}", "languages_url": "/languages", "merges_url": "/merges",
    "milestones_url": "/milestones{/number}", "notifications_url": "/notifications{?since,all,participating}",
    "pulls_url": "/pulls{/number}", "releases_url": "/releases{/id}", "stargazers_url": "/stargazers",
    "statuses_url": "/statuses/{sha}", "subscribers_url": "/subscribers", "subscription_url": "/subscription",
    "tags_url": "/tags", "teams_url": "/teams", "trees_url": "/git/trees{/sha}",
}
# A served repository's fixed facts (a quiet demo repository; counts are not tracked).
_REPOSITORY_FACTS = {
    "description": None, "fork": False, "homepage": None, "language": None, "forks_count": 0, "forks": 0,
    "stargazers_count": 0, "watchers_count": 0, "watchers": 0, "size": 0, "open_issues_count": 0,
    "open_issues": 0, "is_template": False, "topics": [], "has_issues": True, "has_projects": True,
    "has_wiki": True, "has_pages": False, "has_downloads": True, "archived": False,
    "disabled": False, "visibility": "public", "pushed_at": "2026-01-05T09:00:00Z",
    "created_at": "2026-01-05T09:00:00Z", "updated_at": "2026-01-05T09:00:00Z", "mirror_url": None,
    "license": None,
}


def account(login: str, account_id: int, kind: str = "User") -> dict[str, Any]:
    """A `simple-user` (organisations too, as repository owners, under /users/<login>)."""
    api = f"{API_ROOT}/users/{login}"
    return {"login": login, "id": account_id, "node_id": f"U_kgDO{account_id}",
            "avatar_url": f"https://avatars.githubusercontent.com/u/{account_id}?v=4", "gravatar_id": "",
            "url": api, "html_url": f"{WEB_ROOT}/{login}", "followers_url": f"{api}/followers",
            "following_url": f"{api}/following{{/other_user}}", "gists_url": f"{api}/gists{{/gist_id}}",
            "starred_url": f"{api}/starred{{/owner}}{{/repo}}", "subscriptions_url": f"{api}/subscriptions",
            "organizations_url": f"{api}/orgs", "repos_url": f"{api}/repos", "events_url": f"{api}/events{{/privacy}}",
            "received_events_url": f"{api}/received_events", "type": kind, "user_view_type": "public",
            "site_admin": False}


def reactions(url: str) -> dict[str, Any]:
    """A `reaction-rollup` with no reactions: issues and comments carry one on every path (REST and webhooks)."""
    return {"url": f"{url}/reactions", "total_count": 0, "+1": 0, "-1": 0, "laugh": 0, "hooray": 0, "confused": 0,
            "heart": 0, "rocket": 0, "eyes": 0}


def repository_fields(name: str) -> dict[str, Any]:
    """The URLs and facts of a `repository` besides its id, names, owner and default branch."""
    api = f"{API_ROOT}/repos/{name}"
    return ({key: api + tail for key, tail in _REPOSITORY_URLS.items()}
            | {"git_url": f"git://github.com/{name}.git", "ssh_url": f"git@github.com:{name}.git",
               "clone_url": f"{WEB_ROOT}/{name}.git", "svn_url": f"{WEB_ROOT}/{name}"}
            | _REPOSITORY_FACTS)


def pull_urls(repo: str, number: int, sha: str) -> dict[str, str]:
    """The URL fields of a pull request (besides url, html_url, diff_url, patch_url, issue_url)."""
    api = f"{API_ROOT}/repos/{repo}"
    return {"commits_url": f"{api}/pulls/{number}/commits", "review_comments_url": f"{api}/pulls/{number}/comments",
            "review_comment_url": f"{api}/pulls/comments{{/number}}", "comments_url": f"{api}/issues/{number}/comments",
            "statuses_url": f"{api}/statuses/{sha}"}


def pull_links(repo: str, number: int, sha: str) -> dict[str, dict[str, str]]:
    """A pull request's `_links`."""
    api = f"{API_ROOT}/repos/{repo}"
    urls = pull_urls(repo, number, sha)
    return {"self": {"href": f"{api}/pulls/{number}"}, "html": {"href": f"{WEB_ROOT}/{repo}/pull/{number}"},
            "issue": {"href": f"{api}/issues/{number}"}, "comments": {"href": urls["comments_url"]},
            "review_comments": {"href": urls["review_comments_url"]},
            "review_comment": {"href": urls["review_comment_url"]},
            "commits": {"href": urls["commits_url"]}, "statuses": {"href": urls["statuses_url"]}}
