"""Progress of long steps in the run log (issue 13): the backup role's engine and the restore's file copy
run asynchronously under their action plugins, which print a line with numbers in it (files and bytes
done, rate, ETA against the previous set or the set's total) every immich_backup_progress_interval
seconds; the registered result is the same, key for key, as without progress lines - in a good run, a
failed one and check mode; nothing is left in the remote tmp or async dirs.

The copy is made long enough for a 1-second interval with real work, not a throttle: 24,000 originals
(about 240 MB) that the second backup must copy again (their mtime changed)."""
import json
import os
import re

from rolerun import run_play, write_inventory

BULK_FILES = 24_000

PLAY = """
- name: Back up with the role, keep what the module returned
  hosts: immich
  gather_facts: false
  tasks:
    - name: Run the backup role
      ansible.builtin.include_role:
        name: homelab.immich.backup

    - name: Keep the backup module's result
      ansible.builtin.copy:
        content: "{{ immich_backup_run | to_json }}"
        dest: "{{ progress_out }}/backup-{{ immich_backup_progress_interval }}.json"
        mode: "0600"

    - name: The same module in check mode, without and with progress
      homelab.immich.backup_run:
        instance: "{{ immich_backup_instance }}"
        targets: "{{ immich_backup_targets }}"
        progress_interval: "{{ item }}"
      check_mode: true
      loop: [0, 1]
      register: check_runs
      when: extras | bool

    - name: A backup that fails (its target is under a file), without and with progress
      homelab.immich.backup_run:
        instance: "{{ immich_backup_instance }}"
        targets: [{path: "{{ progress_out }}/a-file/backups"}]
        progress_interval: "{{ item }}"
      loop: [0, 1]
      register: failed_runs
      ignore_errors: true
      when: extras | bool

    - name: Copy the new set's files out, without progress (one small folder) and with progress (all of them)
      homelab.immich.restore_files:
        set_dir: "{{ immich_backup_run.set_dir }}"
        dest: "{{ progress_out }}/restored-{{ item }}"
        folders: "{{ ['profile'] if item == 0 else omit }}"
        progress_interval: "{{ item }}"
      loop: [0, 1]
      register: restores
      when: extras | bool

    - name: Keep the results of both ways
      ansible.builtin.copy:
        content: "{{ {'check': check_runs.results, 'failed': failed_runs.results, 'restore': restores.results} | to_json }}"
        dest: "{{ progress_out }}/both-ways.json"
        mode: "0600"
      when: extras | bool
"""

LINE = re.compile(r"^lab: (?P<step>[a-z ]+): (?P<text>.*)$", re.MULTILINE)
NUMBERS = re.compile(r"[\d,]+ of (?P<est>~?)[\d,]+ files, [\d.]+ (bytes|KB|MB|GB) of ~?[\d.]+ (KB|MB|GB) \(\d+(\.\d)?%\), "
                     r".*\d (KB|MB|GB)/s.*, [\d,.]+ files/s.*, ETA ~?\d+ (s|min)")
LOOP_KEYS = {"item", "ansible_loop_var", "invocation", "_ansible_item_label", "_ansible_no_log", "_ansible_ignore_errors"}


def shape(value):
    """The keys at every level (values and list lengths left out): what a consumer of the result relies on."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return sorted({json.dumps(shape(v), sort_keys=True) for v in value})
    return "value"


def progress_lines(out):
    return [(m.group("step"), m.group("text")) for m in LINE.finditer(out)]


def test_a_long_backup_prints_progress_lines_and_returns_the_same_result(make_instance, tmp_path):
    inst = make_instance(pg=15, seed="small")
    bulk = os.path.join(inst.upload_location, "upload", "bulk")
    blob = os.urandom(16384)
    for i in range(BULK_FILES):
        folder = os.path.join(bulk, "d%03d" % (i // 400))
        if i % 400 == 0:
            os.makedirs(folder)
        with open(os.path.join(folder, "f%05d.jpg" % i), "wb") as fh:
            fh.write(blob[: 4096 + (i * 37) % 12000])
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    (out_dir / "a-file").write_text("not a folder\n")
    remote_tmp, async_dir = tmp_path / "remote-tmp", tmp_path / "async"
    inv = write_inventory(tmp_path, inst, ansible_remote_tmp=str(remote_tmp), ansible_async_dir=str(async_dir),
                          progress_out=str(out_dir))

    # 1. Progress off: the module runs as a plain task, and no line is printed.
    rc, out = run_play(inv, PLAY, tmp_path, "-e", "immich_backup_progress_interval=0", "-e", "extras=false")
    assert rc == 0, out[-4000:]
    assert not progress_lines(out), out[-4000:]
    plain = json.loads((out_dir / "backup-0.json").read_text())

    # 2. Every bulk file changed: the second backup copies them all again, against the first set's size.
    for root, _dirs, names in os.walk(bulk):
        for n in names:
            os.utime(os.path.join(root, n), (1_700_000_000, 1_700_000_000))
    rc, out = run_play(inv, PLAY, tmp_path, "-e", "immich_backup_progress_interval=1", "-e", "extras=true")
    assert rc == 0, out[-4000:]
    lines = progress_lines(out)
    print("\n".join("lab: %s: %s" % line for line in lines))  # what a person sees (pytest -s)
    originals = [text for step, text in lines if step == "originals" and NUMBERS.search(text)]
    assert originals, "no progress line with files, bytes, a rate and an ETA for the originals:\n%s" % out[-6000:]
    assert any("~" in text for text in originals), "the previous set's size is an estimate, marked ~"
    engine_task = out.split("the one engine)] ***", 1)[1].split("\nok: [lab]", 1)[0]
    assert "changed: [lab]" in engine_task and any(step == "originals" for step, _t in progress_lines(engine_task))
    restored = [text for step, text in lines if step == "restore files" and NUMBERS.search(text)]
    assert restored and not any("~" in text for text in restored), "restore lines against the set's exact total"

    progressed = json.loads((out_dir / "backup-1.json").read_text())
    # The first run created the instance's signing key and says so once (a warning); nothing else differs.
    assert any("signing key was created" in w for w in plain.pop("warnings")), plain
    assert not progressed.pop("warnings", None)
    assert any("signing key was created" in w for w in plain["report"]["warnings"]) and not progressed["report"]["warnings"]
    plain["report"]["warnings"] = progressed["report"]["warnings"]
    assert shape(progressed) == shape(plain)
    assert progressed["report"]["status"] == plain["report"]["status"] == "ok"
    assert progressed["report"]["files"]["copied"] == BULK_FILES and progressed["report"]["previous"] == plain["set_id"]
    summary = progressed["report"]["summary_lines"]
    assert re.search(r"originals [\d,]+ files \(.*\) in .* \([\d,]+ files/s\): [\d,]+ copied \([\d.]+ MB, [\d.]+ MB/s\)",
                     "\n".join(summary)), summary
    assert re.search(r"database  .* of SQL dumped in .* \(.*/s\)", "\n".join(summary)), summary

    both = json.loads((out_dir / "both-ways.json").read_text())
    for kind in ("check", "failed", "restore"):
        without, with_progress = ({k: v for k, v in r.items() if k not in LOOP_KEYS} for r in both[kind])
        assert shape(without) == shape(with_progress), kind
    fail0, fail1 = both["failed"]
    assert fail0["failed"] and fail1["failed"] and fail0["msg"] == fail1["msg"]
    assert "a-file" in fail1["msg"] and fail1["report"]["failed_step"] == "preflight"
    check0, check1 = both["check"]
    assert check0["plan"] == check1["plan"] and not check1.get("failed")
    r0, r1 = both["restore"]
    assert 0 < r0["files"] < BULK_FILES <= r1["files"] and not r0.get("failed") and not r1.get("failed")

    # 3. Nothing left behind: no progress file in the remote tmp dir, no async job file.
    leftovers = [os.path.join(root, n) for d in (remote_tmp, async_dir) if d.exists()
                 for root, _dirs, names in os.walk(str(d)) for n in names]
    assert not leftovers, leftovers
