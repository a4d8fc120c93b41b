"""Job hunting: parse a resume -> match jobs -> write a cover letter (the Sequential pattern).

A parser turns the resume into typed fields (`Resume`: name, skills, years of
experience, through the `final_result` tool); a matcher searches the job board
for each skill at once (`search_jobs(skill)`) and picks the posting that fits
best; a writer drafts the cover letter. A function context policy (`brief`)
decides what each step receives: the resume text, then the parsed resume, then
the parsed resume and the chosen job together.

The runnable definitions live here, inside the package, so `orchestrion demo`
works from an installed wheel; `examples/job_hunting.py` imports and runs them.
"""

from __future__ import annotations

import os
import re
from typing import Any

from pydantic import BaseModel

from orchestrion._json import JSON, dumps_str, loads
from orchestrion.agent import Agent
from orchestrion.demos.stand_in import calls, first_text, offered, say, unprefixed
from orchestrion.messages import ModelRequest, ModelResponse, ToolCall, ToolResult
from orchestrion.patterns.sequential import Outputs, Sequential
from orchestrion.tools.tool import tool

__all__ = ["JOBS", "TASK", "Resume", "agent", "brief", "pipeline", "stand_in_policy"]

TASK = """Find me a job and write the cover letter. My resume:
Dana Reyes
Data engineer, 7 years of experience.
Skills: Python, SQL, Airflow, Kafka
2021-now: Senior data engineer at Fabrikam (streaming pipelines on Kafka).
2018-2021: Data engineer at Contoso (Airflow, SQL warehouses)."""

MODEL = os.environ.get("ORCHESTRION_MODEL") or "stand-in:job-hunting"

JOBS: tuple[dict[str, Any], ...] = (
    {
        "id": "JOB-17",
        "title": "Senior Data Engineer",
        "company": "Northwind",
        "skills": ["python", "sql", "airflow", "kafka"],
        "min_years": 5,
    },
    {
        "id": "JOB-23",
        "title": "Staff Platform Engineer",
        "company": "Tailspin",
        "skills": ["go", "kubernetes", "kafka"],
        "min_years": 10,
    },
    {
        "id": "JOB-31",
        "title": "Analytics Engineer",
        "company": "Litware",
        "skills": ["sql", "dbt"],
        "min_years": 2,
    },
)


class Resume(BaseModel):
    """What the parser reads from a resume."""

    name: str
    skills: list[str]
    years: int


@tool
async def search_jobs(skill: str) -> list[dict[str, Any]]:
    """Open postings on the job board that ask for a skill.

    Args:
        skill: One skill, e.g. "python".
    """
    wanted = skill.strip().lower()
    return [job for job in JOBS if wanted in job["skills"]]


def brief(task: JSON, outputs: Outputs) -> JSON:
    """What each step receives: the resume text, the parsed resume, then the resume and the match."""
    if not outputs:
        return task
    if len(outputs) == 1:
        return outputs[0][1]
    resume, match = outputs[0][1], outputs[-1][1]
    return f"Resume: {dumps_str(resume)}\n\nMatch: {match}"


def _parse(request: ModelRequest) -> ModelResponse:
    text = first_text(request)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    name = lines[1] if len(lines) > 1 else "the candidate"
    skills = re.search(r"Skills: (.+)", text)
    years = re.search(r"(\d+) years", text)
    fields = {
        "name": name,
        "skills": [s.strip().lower() for s in skills.group(1).split(",")] if skills else [],
        "years": int(years.group(1)) if years else 0,
    }
    return calls(ToolCall("c_final", "final_result", dumps_str(fields)))


def _match(request: ModelRequest) -> ModelResponse:
    try:
        resume = Resume.model_validate(loads(first_text(request)))
    except ValueError:
        return say("I expected the parsed resume as JSON and got something else.")
    done = [m for m in request.messages if isinstance(m, ToolResult) and m.name == "search_jobs"]
    if not done:  # one search per skill, all in the same turn
        return calls(
            *(
                ToolCall(f"c_search_{i}", "search_jobs", dumps_str({"skill": skill}))
                for i, skill in enumerate(resume.skills)
            )
        )
    postings: dict[str, dict[str, Any]] = {job["id"]: job for r in done for job in loads(r.content)}
    fits = [job for job in postings.values() if job["min_years"] <= resume.years]
    if not fits:
        return say("No match: no posting for these skills asks for this much experience or less.")
    best = max(
        fits, key=lambda job: (len(set(job["skills"]) & set(resume.skills)), -job["min_years"])
    )
    matched = [s for s in best["skills"] if s in resume.skills]
    return say(
        f"Best match: {best['id']} {best['title']} at {best['company']}: "
        f"matches {', '.join(matched)}; needs {best['min_years']}+ years, "
        f"{resume.name} has {resume.years}."
    )


def _letter(request: ModelRequest) -> ModelResponse:
    text = first_text(request)
    resume_json = re.search(r"^Resume: (.*)$", text, re.M)
    matched = unprefixed(text.partition("\n\nMatch: ")[2])
    match = re.search(r"^Best match: (\S+) (.+?) at (.+?): matches ([^;]+);", matched)
    if resume_json is None or match is None:
        return say(f"No cover letter, no job to apply for. {matched or text}")
    resume = Resume.model_validate(loads(resume_json.group(1)))
    job_id, title, company, skills = match.groups()
    return say(
        f"Dear {company} hiring team,\n\n"
        f"I am applying for the {title} role ({job_id}). In {resume.years} years as a data "
        f"engineer I have worked every day with {skills}, the skills this role asks for.\n\n"
        f"I would welcome the chance to talk.\n\nKind regards,\n{resume.name}"
    )


def stand_in_policy(request: ModelRequest) -> ModelResponse:
    """One policy for the pipeline: the asking agent is known by the tools it is offered."""
    tools = offered(request)
    if "final_result" in tools:
        return _parse(request)
    if "search_jobs" in tools:
        return _match(request)
    return _letter(request)


parse_resume = Agent(
    name="parse_resume",
    instructions="You read resumes. Give the candidate's name, skills (lower case) and years of experience.",
    model=MODEL,
    output_type=Resume,
)
match_jobs = Agent(
    name="match_jobs",
    instructions=(
        "You match candidates to jobs. Search the job board for each of the candidate's skills, "
        "then name the one posting that matches the most skills and asks for no more years than "
        "they have: 'Best match: <id> <title> at <company>: matches <skills>; ...'."
    ),
    model=MODEL,
    tools=[search_jobs],
)
cover_letter = Agent(
    name="cover_letter",
    instructions=(
        "You write short cover letters. From the parsed resume and the matched job, write a "
        "letter to the company naming the role and the candidate's matching skills."
    ),
    model=MODEL,
)

pipeline = Sequential(
    name="job-hunting",
    members=[parse_resume, match_jobs, cover_letter],
    context=brief,
    description="Parse a resume, match it to a job, write the cover letter.",
)
agent = pipeline  # `orchestrion demo` runs `<demo module>:agent`
