from optio.models import Event, Task


def test_create_task_queues_it_and_writes_events(api, repo):
    resp = api.post(
        "/api/tasks", {"title": "Add email validation", "prompt": "Do it", "repoUrl": "git@github.com:Acme/WebApp.git"}
    )
    assert resp.status_code == 201, resp.content
    body = resp.json()
    assert body["state"] == "queued"
    assert body["repoUrl"] == "https://github.com/acme/webapp"
    task = Task.objects.get(pk=body["id"])
    assert [e.name for e in Event.objects.filter(task=task)] == ["task.created", "task.queued"]


def test_task_for_unconnected_repo_is_a_clear_400(api, db):
    resp = api.post("/api/tasks", {"title": "t", "prompt": "p", "repoUrl": "https://github.com/nobody/here"})
    assert resp.status_code == 400
    assert "not a connected repository" in resp.json()["error"]
