//! The finance built-ins of `flows/personal-finance.toml`.
//!
//! Each is a pure function of its arguments, computed with [`Decimal`] and rounded once at
//! the end (see [`money`](super::money) for why). The result fields are what the flow's
//! `after` rules read; extra fields give the model context for its answer.
//!
//! | built-in | arguments | result |
//! | --- | --- | --- |
//! | `finance.savings_timeline` | `goal_amount`, `monthly_income`, `monthly_savings` | `months`, `years`, `attainable`, `horizon_years`, `savings_rate_percent` |
//! | `finance.budget_analysis` | `monthly_income`, `monthly_expenses` | `needs`, `wants`, `savings_target`, `surplus`, `recommended_savings`, `overspending`, `expense_ratio_percent` |
//! | `finance.compound_growth` | `monthly_contribution`, `years`, `risk_tolerance` | `future_value`, `total_contributions`, `growth`, `annual_rate_percent`, `months` |
//! | `finance.loan_payment` | `principal`, `annual_rate_percent`, `years` | `monthly_payment`, `total_paid`, `total_interest`, `months` |
//!
//! **Attainable.** A savings plan is attainable when the monthly savings do not exceed the
//! monthly income (nobody can save more than they earn, month after month) *and* the goal is
//! reached within [`HORIZON_YEARS`] (30) years. Thirty years is the longest common mortgage
//! term and about as far as a plan built on today's income and a constant savings rate means
//! anything; a plan that needs longer should be changed, not followed, which is exactly the
//! flow's "out of reach" advice.

use clarion_engine::ToolErrorKind;
use rust_decimal::Decimal;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use clarion_engine::ToolError;

use super::BuiltinRegistry;
use super::money::{Amount, Checked};

/// Savings plans longer than this many years are not attainable.
pub const HORIZON_YEARS: u32 = 30;

/// Longest loan or investment horizon accepted, in years.
pub const MAX_YEARS: u32 = 100;

/// Adds the finance built-ins to `registry`.
pub fn register(registry: &mut BuiltinRegistry) {
    registry
        .register_pure("finance.savings_timeline", savings_timeline)
        .register_pure("finance.budget_analysis", budget_analysis)
        .register_pure("finance.compound_growth", compound_growth)
        .register_pure("finance.loan_payment", loan_payment);
}

fn invalid(message: impl Into<String>) -> ToolError {
    ToolError::new(ToolErrorKind::InvalidArguments, message)
}

fn at_least_zero(name: &str, value: Amount) -> Result<Decimal, ToolError> {
    if value.get().is_sign_negative() && !value.get().is_zero() {
        return Err(invalid(format!(
            "`{name}` must not be negative (got {value})"
        )));
    }
    Ok(value.get())
}

fn positive(name: &str, value: Amount) -> Result<Decimal, ToolError> {
    if value.get() <= Decimal::ZERO {
        return Err(invalid(format!(
            "`{name}` must be more than 0 (got {value})"
        )));
    }
    Ok(value.get())
}

fn term(name: &str, years: u32) -> Result<u64, ToolError> {
    if years == 0 || years > MAX_YEARS {
        return Err(invalid(format!(
            "`{name}` must be between 1 and {MAX_YEARS} (got {years})"
        )));
    }
    Ok(u64::from(years) * 12)
}

fn percent(part: Decimal, whole: Decimal) -> Result<Option<Amount>, ToolError> {
    if whole.is_zero() {
        return Ok(None);
    }
    Ok(Some(Amount::places(
        part.mul(Decimal::ONE_HUNDRED)?.div(whole)?,
        1,
    )))
}

// ---- savings timeline -------------------------------------------------------------------

/// Arguments of `finance.savings_timeline`.
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SavingsTimelineArgs {
    /// Target amount in dollars.
    pub goal_amount: Amount,
    /// Net monthly income in dollars.
    pub monthly_income: Amount,
    /// Amount saved each month in dollars.
    pub monthly_savings: Amount,
}

/// Result of `finance.savings_timeline`.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct SavingsTimeline {
    /// Whole months until the goal is reached (a last partial month counts).
    pub months: Amount,
    /// `months / 12`, to one decimal.
    pub years: Amount,
    /// Savings within income and the goal within [`HORIZON_YEARS`].
    pub attainable: bool,
    /// The horizon `attainable` was judged against.
    pub horizon_years: u32,
    /// Savings as a percentage of income, to one decimal (absent when income is 0).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub savings_rate_percent: Option<Amount>,
}

/// Months and years to reach a savings goal.
pub fn savings_timeline(args: SavingsTimelineArgs) -> Result<SavingsTimeline, ToolError> {
    let goal = positive("goal_amount", args.goal_amount)?;
    let income = at_least_zero("monthly_income", args.monthly_income)?;
    let savings = positive("monthly_savings", args.monthly_savings)?;
    let months = goal.div(savings)?.ceil();
    let years = Amount::places(months.div(Decimal::from(12))?, 1);
    let attainable = savings <= income && months <= Decimal::from(HORIZON_YEARS * 12);
    Ok(SavingsTimeline {
        months: Amount(months.normalize()),
        years,
        attainable,
        horizon_years: HORIZON_YEARS,
        savings_rate_percent: percent(savings, income)?,
    })
}

// ---- budget analysis --------------------------------------------------------------------

/// Arguments of `finance.budget_analysis`.
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BudgetArgs {
    /// Net monthly income in dollars.
    pub monthly_income: Amount,
    /// Total monthly expenses in dollars.
    pub monthly_expenses: Amount,
}

/// Result of `finance.budget_analysis`: the 50/30/20 rule applied to the income.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct Budget {
    /// 50 % of income: the budget for needs.
    pub needs: Amount,
    /// 30 % of income: the budget for wants.
    pub wants: Amount,
    /// 20 % of income: the savings target.
    pub savings_target: Amount,
    /// Income minus expenses (negative when spending exceeds income).
    pub surplus: Amount,
    /// What the user can save without changing their spending, up to the 20 % target:
    /// `min(savings_target, max(surplus, 0))`.
    pub recommended_savings: Amount,
    /// Expenses above needs plus wants (80 % of income).
    pub overspending: bool,
    /// Expenses as a percentage of income, to one decimal (absent when income is 0).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expense_ratio_percent: Option<Amount>,
}

/// Splits an income by the 50/30/20 rule and compares it with actual expenses.
pub fn budget_analysis(args: BudgetArgs) -> Result<Budget, ToolError> {
    let income = at_least_zero("monthly_income", args.monthly_income)?;
    let expenses = at_least_zero("monthly_expenses", args.monthly_expenses)?;
    let share = |pct: i64| -> Result<Decimal, ToolError> {
        income.mul(Decimal::from(pct))?.div(Decimal::ONE_HUNDRED)
    };
    let (needs, wants, target) = (share(50)?, share(30)?, share(20)?);
    let surplus = income.sub(expenses)?;
    let recommended = target.min(surplus.max(Decimal::ZERO));
    Ok(Budget {
        needs: Amount::cents(needs),
        wants: Amount::cents(wants),
        savings_target: Amount::cents(target),
        surplus: Amount::cents(surplus),
        recommended_savings: Amount::cents(recommended),
        overspending: expenses > needs.add(wants)?,
        expense_ratio_percent: percent(expenses, income)?,
    })
}

// ---- compound growth --------------------------------------------------------------------

/// Investment risk, which sets the assumed return.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RiskTolerance {
    /// Mostly bonds: 4 % a year.
    Low,
    /// A balanced portfolio: 6 % a year.
    Medium,
    /// Mostly stocks: 8 % a year.
    High,
}

impl RiskTolerance {
    /// The assumed nominal annual return, in percent.
    #[must_use]
    pub fn annual_rate_percent(self) -> Decimal {
        Decimal::from(match self {
            Self::Low => 4,
            Self::Medium => 6,
            Self::High => 8,
        })
    }
}

/// Arguments of `finance.compound_growth`.
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GrowthArgs {
    /// Amount invested each month in dollars.
    pub monthly_contribution: Amount,
    /// Investment horizon in years.
    pub years: u32,
    /// Investment risk the user accepts; sets the assumed annual return.
    pub risk_tolerance: RiskTolerance,
}

/// Result of `finance.compound_growth`.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct Growth {
    /// Value at the end of the horizon.
    pub future_value: Amount,
    /// Sum of all contributions.
    pub total_contributions: Amount,
    /// `future_value - total_contributions`.
    pub growth: Amount,
    /// The assumed annual return, in percent.
    pub annual_rate_percent: Amount,
    /// Number of monthly contributions.
    pub months: u64,
}

/// Future value of monthly contributions, compounded monthly, each made at the end of its
/// month: `FV = C × ((1 + r)^n − 1) / r` with `r` the annual rate / 12 and `n` the months.
pub fn compound_growth(args: GrowthArgs) -> Result<Growth, ToolError> {
    let contribution = positive("monthly_contribution", args.monthly_contribution)?;
    let months = term("years", args.years)?;
    let annual = args.risk_tolerance.annual_rate_percent();
    let rate = annual.div(Decimal::from(1200))?;
    let factor = Decimal::ONE.add(rate)?.pow(months)?;
    let future = contribution.mul(factor.sub(Decimal::ONE)?.div(rate)?)?;
    let contributions = contribution.mul(Decimal::from(months))?;
    Ok(Growth {
        future_value: Amount::cents(future),
        total_contributions: Amount::cents(contributions),
        growth: Amount::cents(future.sub(contributions)?),
        annual_rate_percent: Amount(annual),
        months,
    })
}

// ---- loan payment -----------------------------------------------------------------------

/// Arguments of `finance.loan_payment`.
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LoanArgs {
    /// Amount borrowed in dollars.
    pub principal: Amount,
    /// Annual interest rate in percent, e.g. 6.5.
    pub annual_rate_percent: Amount,
    /// Loan term in years.
    pub years: u32,
}

/// Result of `finance.loan_payment`.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct Loan {
    /// The fixed monthly payment, to the cent.
    pub monthly_payment: Amount,
    /// Every payment over the term.
    pub total_paid: Amount,
    /// `total_paid - principal`.
    pub total_interest: Amount,
    /// Number of monthly payments.
    pub months: u64,
}

/// The fixed monthly payment of an amortizing loan: `M = P × r / (1 − (1 + r)^−n)`, with
/// `r` the annual rate / 12 and `n` the months (`P / n` at 0 %). Totals use the exact
/// payment; a lender's schedule, which rounds each payment to the cent and adjusts the last,
/// differs by cents.
pub fn loan_payment(args: LoanArgs) -> Result<Loan, ToolError> {
    let principal = positive("principal", args.principal)?;
    let annual = at_least_zero("annual_rate_percent", args.annual_rate_percent)?;
    if annual > Decimal::ONE_HUNDRED {
        return Err(invalid(format!(
            "`annual_rate_percent` must be at most 100 (got {annual})"
        )));
    }
    let months = term("years", args.years)?;
    let n = Decimal::from(months);
    let payment = if annual.is_zero() {
        principal.div(n)?
    } else {
        let rate = annual.div(Decimal::from(1200))?;
        let factor = Decimal::ONE.add(rate)?.pow(months)?;
        principal
            .mul(rate)?
            .mul(factor)?
            .div(factor.sub(Decimal::ONE)?)?
    };
    let total = payment.mul(n)?;
    Ok(Loan {
        monthly_payment: Amount::cents(payment),
        total_paid: Amount::cents(total),
        total_interest: Amount::cents(total.sub(principal)?),
        months,
    })
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use super::*;
    use serde_json::{Value, json};

    fn d(text: &str) -> Amount {
        Amount(Decimal::from_str(text).unwrap_or_else(|e| panic!("{text}: {e}")))
    }

    fn call(name: &str, args: Value) -> Result<Value, ToolError> {
        let Value::Object(args) = args else {
            panic!("arguments must be an object")
        };
        BuiltinRegistry::standard().call(name, &args)
    }

    fn ok(name: &str, args: Value) -> Value {
        call(name, args).unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    // Published values: the standard amortization formula as printed in loan tables and by
    // lenders' calculators.
    #[test]
    fn loan_payments_match_published_examples() {
        // $200,000 at 6.5 % over 30 years: $1,264.14 a month, $255,088.98 interest.
        let loan = loan_payment(LoanArgs {
            principal: d("200000"),
            annual_rate_percent: d("6.5"),
            years: 30,
        })
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(loan.monthly_payment, d("1264.14"));
        assert_eq!(loan.total_interest, d("255088.98"));
        assert_eq!(loan.months, 360);
        // $100,000 at 6 % over 30 years: $599.55, $115,838.19 interest.
        let loan = ok(
            "finance.loan_payment",
            json!({"principal": 100_000, "annual_rate_percent": 6, "years": 30}),
        );
        assert_eq!(loan["monthly_payment"], json!(599.55));
        assert_eq!(loan["total_interest"], json!(115_838.19));
        assert_eq!(loan["total_paid"], json!(215_838.19));
        // $30,000 car loan at 7 % over 5 years: $594.04.
        let loan = ok(
            "finance.loan_payment",
            json!({"principal": 30000, "annual_rate_percent": 7, "years": 5}),
        );
        assert_eq!(loan["monthly_payment"], json!(594.04));
        // $250,000 at 4.5 % over 15 years: $1,912.48.
        let loan = ok(
            "finance.loan_payment",
            json!({"principal": 250_000, "annual_rate_percent": 4.5, "years": 15}),
        );
        assert_eq!(loan["monthly_payment"], json!(1912.48));
    }

    #[test]
    fn a_loan_at_zero_percent_is_principal_over_months() {
        let loan = ok(
            "finance.loan_payment",
            json!({"principal": 12000, "annual_rate_percent": 0, "years": 1}),
        );
        assert_eq!(
            loan,
            json!({"monthly_payment": 1000, "total_paid": 12000, "total_interest": 0, "months": 12})
        );
    }

    #[test]
    fn compound_growth_matches_the_future_value_of_an_annuity() {
        // $100 a month at 6 % for 10 years, compounded monthly: $16,387.93 (the textbook
        // future value of an ordinary annuity).
        let growth = ok(
            "finance.compound_growth",
            json!({"monthly_contribution": 100, "years": 10, "risk_tolerance": "medium"}),
        );
        assert_eq!(
            growth,
            json!({
                "future_value": 16387.93,
                "total_contributions": 12000,
                "growth": 4387.93,
                "annual_rate_percent": 6,
                "months": 120,
            })
        );
        // $500 a month at 8 % for 30 years: $745,179.72.
        let growth = ok(
            "finance.compound_growth",
            json!({"monthly_contribution": 500, "years": 30, "risk_tolerance": "high"}),
        );
        assert_eq!(growth["future_value"], json!(745_179.72));
        // $200 a month at 4 % for 20 years: $73,354.93.
        let growth = ok(
            "finance.compound_growth",
            json!({"monthly_contribution": 200, "years": 20, "risk_tolerance": "low"}),
        );
        assert_eq!(growth["future_value"], json!(73354.93));
    }

    #[test]
    fn savings_timelines_round_up_to_whole_months() {
        let plan = ok(
            "finance.savings_timeline",
            json!({"goal_amount": 50000, "monthly_income": 5000, "monthly_savings": 1000}),
        );
        assert_eq!(
            plan,
            json!({"months": 50, "years": 4.2, "attainable": true, "horizon_years": 30, "savings_rate_percent": 20})
        );
        let plan = ok(
            "finance.savings_timeline",
            json!({"goal_amount": 10000, "monthly_income": 4000, "monthly_savings": 333.33}),
        );
        assert_eq!(plan["months"], json!(31), "30.0003 months is 31 months");
        assert_eq!(plan["years"], json!(2.6));
    }

    #[test]
    fn attainable_means_within_income_and_thirty_years() {
        let plan = |goal: i64, income: f64, savings: f64| {
            ok(
                "finance.savings_timeline",
                json!({"goal_amount": goal, "monthly_income": income, "monthly_savings": savings}),
            )
        };
        let at_horizon = plan(360_000, 3000.0, 1000.0);
        assert_eq!(at_horizon["months"], json!(360));
        assert_eq!(at_horizon["attainable"], json!(true), "exactly 30 years");
        assert_eq!(plan(360_001, 3000.0, 1000.0)["attainable"], json!(false));
        let far = plan(2_000_000, 3000.0, 100.0);
        assert_eq!(far["years"], json!(1666.7));
        assert_eq!(far["attainable"], json!(false));
        let beyond_income = plan(1000, 500.0, 600.0);
        assert_eq!(beyond_income["months"], json!(2));
        assert_eq!(beyond_income["attainable"], json!(false));
        let no_income = plan(1000, 0.0, 100.0);
        assert_eq!(no_income["attainable"], json!(false));
        assert!(no_income.get("savings_rate_percent").is_none());
    }

    #[test]
    fn budgets_follow_fifty_thirty_twenty() {
        let budget = ok(
            "finance.budget_analysis",
            json!({"monthly_income": 6000, "monthly_expenses": 4000}),
        );
        assert_eq!(
            budget,
            json!({
                "needs": 3000, "wants": 1800, "savings_target": 1200, "surplus": 2000,
                "recommended_savings": 1200, "overspending": false, "expense_ratio_percent": 66.7,
            })
        );
        // Spending 90 %: only the 10 % left over can be saved, and it is overspending.
        let budget = ok(
            "finance.budget_analysis",
            json!({"monthly_income": 5000, "monthly_expenses": 4500}),
        );
        assert_eq!(budget["recommended_savings"], json!(500));
        assert_eq!(budget["overspending"], json!(true));
        // Spending more than the income: nothing to save.
        let budget = ok(
            "finance.budget_analysis",
            json!({"monthly_income": 3000, "monthly_expenses": 3500.5}),
        );
        assert_eq!(budget["surplus"], json!(-500.5));
        assert_eq!(budget["recommended_savings"], json!(0));
        // Exactly 80 % is not overspending; cents survive.
        let budget = ok(
            "finance.budget_analysis",
            json!({"monthly_income": 3333.33, "monthly_expenses": 2666.664}),
        );
        assert_eq!(budget["overspending"], json!(false));
        assert_eq!(budget["savings_target"], json!(666.67));
    }

    #[test]
    fn cents_do_not_drift() {
        // In f64, 2.1 / 0.3 is 7.000000000000001, which rounds up to 8 months.
        let plan = ok(
            "finance.savings_timeline",
            json!({"goal_amount": 2.1, "monthly_income": 1, "monthly_savings": 0.3}),
        );
        assert_eq!(plan["months"], json!(7));
        let budget = ok(
            "finance.budget_analysis",
            json!({"monthly_income": 0.3, "monthly_expenses": 0.1}),
        );
        assert_eq!(budget["surplus"], json!(0.2));
    }

    #[test]
    fn bad_numbers_are_invalid_arguments_never_panics() {
        for (name, args) in [
            (
                "finance.savings_timeline",
                json!({"goal_amount": 100, "monthly_income": 100, "monthly_savings": 0}),
            ),
            (
                "finance.savings_timeline",
                json!({"goal_amount": -1, "monthly_income": 100, "monthly_savings": 10}),
            ),
            (
                "finance.budget_analysis",
                json!({"monthly_income": -1, "monthly_expenses": 0}),
            ),
            (
                "finance.loan_payment",
                json!({"principal": 1000, "annual_rate_percent": 5, "years": 0}),
            ),
            (
                "finance.loan_payment",
                json!({"principal": 1000, "annual_rate_percent": 101, "years": 5}),
            ),
            (
                "finance.loan_payment",
                json!({"principal": 1e300, "annual_rate_percent": 5, "years": 5}),
            ),
            (
                "finance.loan_payment",
                json!({"principal": 7e28, "annual_rate_percent": 100, "years": 100}),
            ),
            (
                "finance.compound_growth",
                json!({"monthly_contribution": 7e27, "years": 100, "risk_tolerance": "high"}),
            ),
            (
                "finance.compound_growth",
                json!({"monthly_contribution": 10, "years": 5, "risk_tolerance": "extreme"}),
            ),
            (
                "finance.loan_payment",
                json!({"principal": 1000, "annual_rate_percent": 5, "years": -3}),
            ),
        ] {
            let error = call(name, args.clone())
                .err()
                .unwrap_or_else(|| panic!("{name} accepted {args}"));
            assert_eq!(
                error.kind,
                ToolErrorKind::InvalidArguments,
                "{name} {args}: {error}"
            );
        }
    }
}
