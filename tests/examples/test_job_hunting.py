"""Job hunting (Sequential, function context): parse a resume, match a job, write the letter."""

from __future__ import annotations

from orchestrion import RunStatus, Runtime
from orchestrion.demos.job_hunting import TASK, Resume, brief, parse_resume, pipeline


async def test_the_resume_is_matched_and_a_cover_letter_written(runtime: Runtime) -> None:
    result = await runtime.run(pipeline, TASK)
    assert result.status is RunStatus.COMPLETED and not result.interrupts
    assert result.output == (
        "[stand-in model] Dear Northwind hiring team,\n\n"
        "I am applying for the Senior Data Engineer role (JOB-17). In 7 years as a data engineer "
        "I have worked every day with python, sql, airflow, kafka, the skills this role asks for."
        "\n\nI would welcome the chance to talk.\n\nKind regards,\nDana Reyes"
    )
    steps = await runtime.history(result.run_id)
    assert all(s.status.value == "completed" for s in steps)
    assert [s.key for s in steps] == [
        "job-hunting/step-0/parse_resume/turn-1/model",
        "job-hunting/step-1/match_jobs/turn-1/model",
        # one search per skill, in the same turn
        "job-hunting/step-1/match_jobs/turn-1/tool/search_jobs#c_search_0",
        "job-hunting/step-1/match_jobs/turn-1/tool/search_jobs#c_search_1",
        "job-hunting/step-1/match_jobs/turn-1/tool/search_jobs#c_search_2",
        "job-hunting/step-1/match_jobs/turn-1/tool/search_jobs#c_search_3",
        "job-hunting/step-1/match_jobs/turn-2/model",
        "job-hunting/step-2/cover_letter/turn-1/model",
    ]


async def test_the_parser_gives_typed_fields(runtime: Runtime) -> None:
    result = await runtime.run(parse_resume, TASK)
    assert result.output == Resume(
        name="Dana Reyes", skills=["python", "sql", "airflow", "kafka"], years=7
    )


def test_the_context_policy_gives_the_letter_both_the_resume_and_the_match() -> None:
    resume = {"name": "Dana Reyes", "skills": ["sql"], "years": 7}
    assert brief("text", []) == "text"
    assert brief("text", [("parse_resume", resume)]) == resume
    letter_input = brief("text", [("parse_resume", resume), ("match_jobs", "Best match: X")])
    assert letter_input == (
        'Resume: {"name":"Dana Reyes","skills":["sql"],"years":7}\n\nMatch: Best match: X'
    )


async def test_too_little_experience_means_no_match_and_no_letter(runtime: Runtime) -> None:
    task = TASK.replace("7 years", "1 years")
    result = await runtime.run(pipeline, task)
    assert result.output == (
        "[stand-in model] No cover letter, no job to apply for. No match: no posting for "
        "these skills asks for this much experience or less."
    )
